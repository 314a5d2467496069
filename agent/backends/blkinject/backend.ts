// The blkinject backend: a filter becomes rules in the kernel's block error injection
// list of the filter's disk (rules.ts), which fails matching bios with the filter's
// status. The kernel neither expires rules nor deletes one, so iofilter owns each
// disk's whole list: it refuses a disk whose list holds rules it did not set, records
// the disk's filters before every change (records.ts), writes the change, reads the list
// back and compares it with the filters; on any difference it puts the previous list
// back and reports. The agent and the watchdog run this same code (TTLs).
//
// What a caller gets when an RPC returns: the kernel lists exactly the rules of the
// disk's filters. While the RPC runs: a new filter's rules are added in front of the
// others (the others stay in force throughout); a replace, delete, halt or TTL end on a
// disk that keeps other filters rebuilds the list (removeall, then every remaining rule)
// with back-to-back writes, and during that rebuild - microseconds to a few ms - some of
// the other filters' rules are absent: an I/O then may pass that either the old or the
// new state would fail, and no I/O is failed that neither would fail.
import type * as native from '../../../native';
import type { BackendCapability } from '../../../proto/gen/iofilter/v1/BackendCapability';
import type { Filter } from '../../../proto/gen/iofilter/v1/Filter';
import { describeFault } from '../../../proto/faults';
import { opToWire } from '../../../proto/names';
import { DeviceInfo, diskSeqOf, resolveDevice } from '../../devices';
import { precondition, RpcError } from '../../errors';
import { FaultSpec, faultToWire } from '../../faults';
import type { Logger } from '../../log';
import { deviceRef } from '../../wire';
import type { Clock, StateDir } from '../dm/state';
import { deadlineIn, remainingMs } from '../dm/state';
import type { BackendKey, PersistedBackend } from '../types';
import { probeBlkinject, ProbeEnv } from './capability';
import { debugfsFiles, fileOf, InjectionFiles } from './debugfs';
import { BlkFilter, DiskRecord, DiskRecords, expectedList, isTail } from './records';
import { chanceOf, filterRules, listed, shown, transition } from './rules';

export interface BlkinjectOptions {
  state: StateDir;
  clock: Clock;
  release: string;
  log: Logger;
  sysfs?: string;
  /** Where debugfs is mounted (default /sys/kernel/debug). */
  debugfs?: string;
  /** The debugfs files (tests: an in-memory kernel). */
  files?: InjectionFiles;
  /** Overrides for the capability probe (tests). */
  probeEnv?: Partial<ProbeEnv>;
  onFault?: () => void;
}

export const NOT_COUNTED = "not counted: the kernel's block error injection keeps no counters (it logs injections to the kernel log, rate-limited)";

const same = (a: string[], b: string[]) => a.length === b.length && a.every((x, i) => x === b[i]);
const show = (l: string[]) => (l.length ? l.join('\n') : '(no rules)');

export class BlkinjectBackend implements PersistedBackend {
  readonly name = 'blkinject' as const;
  /** Its rules fail I/O as bpf and dm would: one failing backend per device. */
  readonly exclusive = true;
  private cap: BackendCapability = { backend: 'BACKEND_BLKINJECT', available: false, reason: 'not probed yet', detail: '' };
  private readonly recs: DiskRecords;
  private readonly files: InjectionFiles;
  private readonly reported = new Set<string>();

  constructor(readonly o: BlkinjectOptions) {
    this.recs = new DiskRecords(o.state);
    this.files = o.files ?? debugfsFiles(this.debugfs);
  }

  private get debugfs() {
    return this.o.debugfs ?? '/sys/kernel/debug';
  }
  private get sysfs() {
    return this.o.sysfs ?? '/sys';
  }

  async probe(): Promise<BackendCapability> {
    this.cap = probeBlkinject({ debugfs: this.debugfs, mounts: '/proc/self/mounts', lockdown: `${this.sysfs}/kernel/security/lockdown`, release: this.o.release, ...this.o.probeEnv });
    return this.cap;
  }

  capability(): BackendCapability {
    return this.cap;
  }

  async refusal(spec: native.FilterSpec, dev: DeviceInfo, fault: FaultSpec): Promise<string | null> {
    const p = this.plan(spec, dev, fault);
    return 'refusal' in p ? p.refusal : null;
  }

  /** The filter's rules (as listed) and chance, or why the kernel cannot do exactly that here. */
  private plan(spec: native.FilterSpec, dev: DeviceInfo, fault: FaultSpec): { refusal: string } | { rules: string[]; chance: number; status: string } {
    if (fault.kind !== 'error')
      return { refusal: `${describeFault(faultToWire(fault))}: block error injection only ends I/O with an error status (the dm backend delays, drops and corrupts; throttle limits a cgroup)` };
    if (!this.cap.available) return { refusal: `blkinject unavailable: ${this.cap.reason}` };
    const disk = dev.disk.name;
    if (!this.files.exists(disk)) return { refusal: `disk ${disk} has no ${fileOf(this.debugfs, disk)}` };
    if (spec.cgroup) return { refusal: 'cgroup scope: block error injection fails every I/O to its sectors, whoever sends it (the bpf backend scopes by cgroup)' };
    if (spec.maxFailures) return { refusal: 'max_failures: block error injection cannot count the I/O it fails (the bpf backend can)' };
    if (spec.eventsSpared || (spec.eventsPerSecond ?? 0) > 0) return { refusal: 'events: blkinject filters have no per-I/O events (set events_per_second 0)' };
    const chance = chanceOf(spec.probability);
    if (typeof chance === 'string') return { refusal: chance };
    const ranges = spec.ranges.length ? spec.ranges : [{ start: 0n, end: dev.size - 1n, ops: spec.wholeOps ?? [] }];
    const rules = filterRules(ranges, dev.start, fault.status.tag, chance);
    if (typeof rules === 'string') return { refusal: rules };
    const own = this.ownership(this.recs.get(`${dev.disk.major}:${dev.disk.minor}`), disk);
    if (own) return { refusal: own };
    return { rules: rules.map(shown), chance, status: fault.status.tag };
  }

  /** Null when the disk's live list is iofilter's (what its record says, or a tail of an unfinished change); else why not. */
  private ownership(rec: DiskRecord | null, disk: string): string | null {
    const live = listed(this.files.read(disk));
    if (!rec) {
      if (!live.length) return null;
      return (
        `disk ${disk} already has block error injection rules that iofilter did not set:\n${show(live)}\n` +
        `iofilter owns a disk's whole rule list (the kernel removes rules only all at once); remove them first if they are not needed (echo removeall > ${fileOf(this.debugfs, disk)})`
      );
    }
    const want = expectedList(rec.filters);
    if (same(live, want) || (rec.prior && (isTail(live, want) || isTail(live, rec.prior.rules)))) return null;
    return (
      `the block error injection rules of disk ${disk} were changed by someone else (filters ${rec.filters.map((f) => f.id).join(', ')}); not overwritten. ` +
      `live rules:\n${show(live)}\nexpected (set by iofilter):\n${show(want)}`
    );
  }

  async set(spec: native.FilterSpec, dev: DeviceInfo, fault: FaultSpec): Promise<Filter> {
    const key = `${dev.disk.major}:${dev.disk.minor}`;
    let rec = this.recs.get(key);
    if (rec) rec = this.settle(rec);
    const p = this.plan(spec, dev, fault);
    if ('refusal' in p) throw precondition(`backend blkinject: ${p.refusal}`);
    rec ??= { version: 1, disk: dev.disk.name, devno: key, diskseq: String(dev.diskseq), nextSeq: 1, filters: [], prior: null };
    const devno = `${dev.major}:${dev.minor}`;
    const before = rec.filters.find((f) => f.devno === devno);
    const f: BlkFilter = {
      id: before?.id ?? this.o.state.nextId(),
      seq: before?.seq ?? rec.nextSeq,
      devno,
      name: dev.name,
      offset: String(dev.start),
      size: String(dev.size),
      whole: !spec.ranges.length,
      ranges: spec.ranges.length ? spec.ranges.map((r) => ({ start: String(r.start), end: String(r.end), ops: r.ops })) : [{ start: '0', end: String(dev.size - 1n), ops: spec.wholeOps ?? [] }],
      status: p.status,
      chance: p.chance,
      deadline: spec.ttlMs ? deadlineIn(spec.ttlMs, this.o.clock) : null,
      createdUnixMs: this.o.clock.realtimeMs(),
      fault: faultToWire(fault),
      rules: p.rules,
    };
    this.change(rec, [...rec.filters.filter((x) => x !== before), f]);
    this.o.log.info({ disk: rec.disk, id: f.id, device: devno, rules: f.rules }, 'block error injection rules in force');
    if (f.deadline) this.o.onFault?.();
    return this.toFilter(f, rec);
  }

  /**
   * Makes the kernel list the rules of `filters` (the disk's filters after the change):
   * the record first, then the writes, then the list read back and compared. On any
   * failure the previous list is put back, and the error says what happened.
   */
  private change(rec: DiskRecord, filters: BlkFilter[]): void {
    const from = expectedList(rec.filters);
    const to = expectedList(filters);
    const own = this.ownership({ ...rec, prior: null }, rec.disk);
    if (own) throw precondition(`backend blkinject: ${own}`);
    const next: DiskRecord = { ...rec, nextSeq: Math.max(rec.nextSeq, ...filters.map((f) => f.seq + 1)), filters, prior: { filters: rec.filters, rules: from } };
    this.recs.put(next); // before the kernel: a crash from here on is finished by settle()
    try {
      this.apply(rec.disk, from, to);
    } catch (e) {
      let undone: string;
      try {
        this.apply(rec.disk, listed(this.files.read(rec.disk)), from);
        this.commit({ ...rec, prior: null });
        undone = 'the previous rules are back in force, nothing changed';
      } catch (u) {
        undone = `putting the previous rules back failed too (${(u as Error).message}); the next change or the agent's restart retries`;
      }
      throw precondition(`backend blkinject: changing the rules of disk ${rec.disk} failed: ${(e as Error).message}; ${undone}`);
    }
    this.commit({ ...next, prior: null });
  }

  private commit(rec: DiskRecord): void {
    if (rec.filters.length) this.recs.put(rec);
    else this.recs.remove(rec.devno);
  }

  /** Writes the transition from `from` to `to`, then checks the kernel lists exactly `to`. */
  private apply(disk: string, from: string[], to: string[]): void {
    this.files.write(disk, transition(from, to));
    const live = listed(this.files.read(disk));
    if (!same(live, to)) throw new Error(`the kernel lists\n${show(live)}\ninstead of\n${show(to)}`);
  }

  /**
   * Brings a record in line with the kernel before anything else is done with it:
   * forgets the filters of a disk that is gone, removes those of a disk whose medium
   * changed (they were bound to the old one), and finishes a change a crash
   * interrupted. Returns the record, or null when nothing is left of it.
   */
  private settle(rec: DiskRecord): DiskRecord | null {
    const [major, minor] = rec.devno.split(':').map(Number);
    const seq = diskSeqOf({ major, minor }, this.sysfs);
    if (seq === null || !this.files.exists(rec.disk)) {
      this.o.log.warn({ disk: rec.disk, ids: rec.filters.map((f) => f.id) }, 'the disk of blkinject filters is gone (the kernel dropped its rules with it); forgetting them');
      this.recs.remove(rec.devno);
      return null;
    }
    if (rec.diskseq !== '0' && seq !== 0n && String(seq) !== rec.diskseq) {
      this.change({ ...rec, prior: null }, []);
      this.o.log.warn({ disk: rec.disk, ids: rec.filters.map((f) => f.id), medium: rec.diskseq, now: String(seq) }, 'removed blkinject filters whose disk has a new medium');
      return null;
    }
    if (!rec.prior) return rec;
    const own = this.ownership(rec, rec.disk);
    if (own) throw precondition(`backend blkinject: ${own}`);
    this.apply(rec.disk, listed(this.files.read(rec.disk)), expectedList(rec.filters));
    const done = { ...rec, prior: null };
    this.commit(done);
    this.o.log.info({ disk: rec.disk }, 'finished a change of blkinject rules that was interrupted');
    return done.filters.length ? done : null;
  }

  private find(key: BackendKey): { rec: DiskRecord; f: BlkFilter } | null {
    for (const rec of this.recs.all()) {
      const f = rec.filters.find((x) => ('id' in key ? x.id === key.id : x.devno === `${key.device.major}:${key.device.minor}`));
      if (f) return { rec, f };
    }
    return null;
  }

  async delete(key: BackendKey): Promise<number> {
    const hit = this.find(key);
    if (!hit) return 0;
    const rec = this.settle(hit.rec);
    if (rec) this.change(rec, rec.filters.filter((x) => x.id !== hit.f.id));
    this.o.log.info({ disk: hit.rec.disk, id: hit.f.id, why: 'deleted' }, 'blkinject filter removed');
    return 1;
  }

  /** Removes every filter; a disk whose rules cannot be removed is reported after the others are done. */
  async clear(): Promise<number> {
    let n = 0;
    let first: Error | null = null;
    for (const r of this.recs.all()) {
      try {
        const rec = this.settle(r);
        if (rec) this.change(rec, []);
        n += r.filters.length;
      } catch (e) {
        first ??= e as Error;
      }
    }
    if (first) throw first instanceof RpcError ? first : precondition(first.message);
    return n;
  }

  /** Settles every record and ends the filters whose TTL has passed; how many ended. */
  async restoreExpired(): Promise<number> {
    let n = 0;
    for (const r of this.recs.all()) {
      try {
        const rec = this.settle(r);
        if (!rec) continue;
        const left = rec.filters.filter((f) => !f.deadline || remainingMs(f.deadline, this.o.clock) > 0);
        if (left.length === rec.filters.length) continue;
        this.change(rec, left);
        n += rec.filters.length - left.length;
        this.o.log.info({ disk: rec.disk, ids: rec.filters.filter((f) => !left.includes(f)).map((f) => f.id), why: 'expired' }, 'blkinject filters removed');
      } catch (e) {
        const key = `${r.devno}:${(e as Error).message}`;
        if (!this.reported.has(key)) this.o.log.error({ disk: r.disk, err: (e as Error).message }, 'blkinject rules cannot be restored');
        this.reported.add(key);
      }
    }
    return n;
  }

  owns(id: number): boolean {
    return this.recs.filters().some((f) => f.id === id);
  }

  unsettled(): boolean {
    return this.recs.all().some((r) => r.prior);
  }

  /** A half-done change counts as a deadline: the watchdog stays to finish it (it may have been ending a TTL). */
  hasDeadlines(): boolean {
    return this.unsettled() || this.recs.filters().some((f) => f.deadline);
  }

  nextDeadlineMs(): number {
    if (this.unsettled()) return 1000;
    const left = this.recs
      .filters()
      .filter((f) => f.deadline)
      .map((f) => remainingMs(f.deadline!, this.o.clock));
    return left.length ? Math.min(...left) : Infinity;
  }

  list(): Filter[] {
    return this.recs.all().flatMap((r) => r.filters.map((f) => this.toFilter(f, r)));
  }

  faultOn(dev: { major: number; minor: number }): BlkFilter | undefined {
    return this.recs.filters().find((f) => f.devno === `${dev.major}:${dev.minor}`);
  }

  private toFilter(f: BlkFilter, rec: DiskRecord): Filter {
    const [major, minor] = f.devno.split(':').map(Number);
    let device;
    try {
      device = deviceRef(resolveDevice(f.devno, this.sysfs));
    } catch {
      device = { major, minor, name: f.name, diskName: rec.disk, sizeSectors: f.size, startSector: f.offset };
    }
    return {
      device,
      wholeDevice: f.whole,
      ranges: f.ranges.map((r) => ({ start: r.start, end: r.end, ops: r.ops.map(opToWire), matched: '0', failed: '0' })),
      hasExpiry: !!f.deadline,
      remainingMs: String(f.deadline ? remainingMs(f.deadline, this.o.clock) : 0),
      probability: 1 / f.chance,
      maxFailures: '0',
      failures: '0',
      id: f.id,
      matchedIos: '0',
      failedIos: '0',
      diskseq: rec.diskseq,
      backend: 'BACKEND_BLKINJECT',
      notCounted: NOT_COUNTED,
      fault: f.fault,
    };
  }
}
