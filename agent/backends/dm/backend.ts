// The dm backend: a filter on a dm device whose live table is all `linear` becomes a
// table with fault segments (table.ts), swapped in as xfstests and LVM's tests do: load
// into the inactive slot, suspend without a filesystem freeze (in-flight I/O completes,
// none is lost or failed), resume. State is persisted before every swap; delete, clear
// and TTL load the original table back byte for byte, unless someone else changed the
// table meanwhile (then FAILED_PRECONDITION with both tables, nothing overwritten).
// The agent and the watchdog run this same code.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as native from '../../../native';
import type { BackendCapability } from '../../../proto/gen/iofilter/v1/BackendCapability';
import type { Filter } from '../../../proto/gen/iofilter/v1/Filter';
import { opToWire } from '../../../proto/names';
import { DeviceInfo, resolveDevice } from '../../devices';
import { precondition, RpcError } from '../../errors';
import type { Logger } from '../../log';
import { deviceRef } from '../../wire';
import { EIO, FaultSpec, faultToWire } from '../../faults';
import type { BackendKey, PersistedBackend } from '../types';
import { Dmsetup, DmsetupError } from './dmsetup';
import type { DmCounting } from './count';
import { Clock, deadlineIn, DmFault, remainingMs, StateDir } from './state';
import { faultedTable, faultRanges, normalize, notLinear, parseTable, TableError } from './table';

export interface DmOptions {
  state: StateDir;
  dm: Dmsetup;
  clock: Clock;
  release: string; // kernel release (error_reads needs 6.4)
  log: Logger;
  sysfs?: string;
  /** Where /dev/mapper/control is looked for (tests: a fake tree). */
  devDir?: string;
  /** Called after a fault with a deadline is in force (the agent starts the watchdog). */
  onFault?: () => void;
  /** Loads a kernel module: null when loaded, else why not (tests substitute). */
  modprobe?: (module: string) => Promise<string | null>;
  /** Counts the I/O its tables fail (count.ts; the agent's, under an observe attach). The watchdog has none. */
  counting?: DmCounting;
}

/** modprobe MODULE, bounded: stock kernels build device-mapper as a module (dm-mod). */
export function modprobe(module: string): Promise<string | null> {
  return new Promise((resolve) => {
    execFile('modprobe', [module], { timeout: 10_000 }, (err, _out, stderr) => resolve(err ? (String(stderr).trim() || err.message).split('\n')[0] : null));
  });
}

export const NOT_COUNTED = 'not counted: no bpf program counts dm filters here';

export class DmBackend implements PersistedBackend {
  readonly name = 'dm' as const;
  readonly exclusive = true;
  private cap: BackendCapability = { backend: 'BACKEND_DM', available: false, reason: 'not probed yet', detail: '' };
  private readonly reported = new Set<string>();

  constructor(readonly o: DmOptions) {}

  private get sysfs() {
    return this.o.sysfs ?? '/sys';
  }

  /** Whether device-mapper works here and which fault targets it has. */
  async probe(): Promise<BackendCapability> {
    const misc = path.join(this.sysfs, 'class', 'misc', 'device-mapper');
    if (!fs.existsSync(misc)) {
      // a module on stock kernels: load it, as dmsetup's users would
      const why = await (this.o.modprobe ?? modprobe)('dm-mod');
      if (why !== null || !fs.existsSync(misc)) {
        this.cap = { backend: 'BACKEND_DM', available: false, reason: `no device-mapper in this kernel: CONFIG_BLK_DEV_DM is off, and modprobe dm-mod failed: ${why ?? 'loaded, but no device-mapper misc device appeared'}`, detail: '' };
        return this.cap;
      }
    }
    if (!fs.existsSync(path.join(this.o.devDir ?? '/dev', 'mapper', 'control'))) {
      this.cap = { backend: 'BACKEND_DM', available: false, reason: 'no /dev/mapper/control (device-mapper is in the kernel: create the node with `dmsetup mknodes`)', detail: '' };
      return this.cap;
    }
    try {
      const t = await this.o.dm.targets();
      const [maj, min] = this.o.release.split('.').map(Number);
      const reads = maj > 6 || (maj === 6 && min >= 4);
      const parts = [t.has('error') ? 'error' : '', t.has('flakey') ? `flakey ${t.get('flakey')} error_writes${reads ? '/error_reads' : ''}` : 'flakey (loaded on first use)', t.has('delay') ? 'delay' : ''];
      this.cap = {
        backend: 'BACKEND_DM',
        available: t.has('error') && t.has('linear'),
        reason: t.has('error') && t.has('linear') ? (reads ? '' : `read-only faults need dm-flakey error_reads (Linux 6.4+; this is ${this.o.release})`) : 'the error or linear target is missing',
        detail: parts.filter(Boolean).join(', '),
      };
    } catch (e) {
      this.cap = { backend: 'BACKEND_DM', available: false, reason: (e as Error).message, detail: '' };
    }
    return this.cap;
  }

  capability(): BackendCapability {
    return this.cap;
  }

  /** The dm name of a device, or null when it is not a dm device. */
  dmName(dev: { major: number; minor: number }): string | null {
    try {
      return fs.readFileSync(path.join(this.sysfs, 'dev', 'block', `${dev.major}:${dev.minor}`, 'dm', 'name'), 'utf8').trim();
    } catch {
      return null;
    }
  }

  /** The devices a dm device sits on (sysfs slaves), for refusals that name what could be faulted instead. */
  private below(dev: { major: number; minor: number }): string[] {
    const dir = path.join(this.sysfs, 'dev', 'block', `${dev.major}:${dev.minor}`, 'slaves');
    return fs.existsSync(dir) ? fs.readdirSync(dir).map((s) => `/dev/${s}`) : [];
  }

  /** The table before any fault of ours: the persisted original while faulted, else the live one. */
  private async baseTable(name: string): Promise<string> {
    return this.o.state.fault(name)?.original ?? (await this.o.dm.table(name));
  }

  async refusal(spec: native.FilterSpec, dev: DeviceInfo, fault: FaultSpec): Promise<string | null> {
    return (await this.plan(spec, dev, fault)).refusal ?? null;
  }

  private async plan(spec: native.FilterSpec, dev: DeviceInfo, fault: FaultSpec): Promise<{ refusal?: string; name?: string; original?: string; faulted?: string }> {
    const name = this.dmName(dev);
    if (!name) return { refusal: `${dev.name} (${dev.major}:${dev.minor}) is not a device-mapper device: the dm backend faults dm devices (LVM LVs, or a device wrapped with \`iofilterctl wrap\`)` };
    if (!this.cap.available) return { refusal: `dm backend unavailable: ${this.cap.reason}` };
    if (spec.cgroup) return { refusal: 'cgroup scope: a dm table fails every I/O to its sectors, whoever sends it (the bpf backend scopes by cgroup)' };
    if (spec.probability !== undefined && spec.probability < 1) return { refusal: `probability ${spec.probability}: a dm error segment fails every I/O (the bpf backend draws per I/O)` };
    if (spec.maxFailures) return { refusal: 'max_failures: a dm table cannot count the I/O it fails (the bpf backend can)' };
    if (spec.eventsSpared) return { refusal: 'events_spared: a dm table spares nothing it matches (its events come from its observe counter)' };
    const original = await this.baseTable(name);
    let segs;
    try {
      segs = parseTable(original);
    } catch (e) {
      return { refusal: `dm device ${name}: ${(e as TableError).message}` };
    }
    const nl = notLinear(segs, name);
    if (nl) {
      const below = this.below(dev);
      return { refusal: nl + (below.length ? `; the device below it (${below.join(', ')}) could be faulted instead` : '') };
    }
    const ranges = spec.ranges.length ? spec.ranges : [{ start: 0n, end: dev.size - 1n, ops: spec.wholeOps ?? [] }];
    const fr = faultRanges(ranges, this.o.release, fault);
    if (typeof fr === 'string') return { refusal: fr };
    return { name, original, faulted: faultedTable(segs, fr) };
  }

  async set(spec: native.FilterSpec, dev: DeviceInfo, fault: FaultSpec = EIO): Promise<Filter> {
    const p = await this.plan(spec, dev, fault);
    if (p.refusal) throw precondition(`backend dm: ${p.refusal}`);
    const name = p.name!;
    const before = this.o.state.fault(name);
    if (before) await this.checkUnchanged(before); // replacing our own fault only
    const f: DmFault = {
      version: 1,
      id: before?.id ?? this.o.state.nextId(),
      name,
      devno: `${dev.major}:${dev.minor}`,
      original: p.original!,
      faulted: p.faulted!,
      ranges: spec.ranges.map((r) => ({ start: String(r.start), end: String(r.end), ops: r.ops })),
      whole: !spec.ranges.length,
      deadline: spec.ttlMs ? deadlineIn(spec.ttlMs, this.o.clock) : null,
      createdUnixMs: this.o.clock.realtimeMs(),
      fault: faultToWire(fault),
    };
    if (spec.eventsPerSecond !== undefined) f.eventsPerSecond = spec.eventsPerSecond;
    if (f.whole) f.ranges = [{ start: '0', end: String(dev.size - 1n), ops: spec.wholeOps ?? [] }];
    this.o.state.putFault(f); // before the swap: a crash from here on still knows the original
    let counting = false;
    try {
      await this.swap(name, f.faulted, () => ((counting = true), this.o.counting?.start(f)));
    } catch (e) {
      if (before) this.o.state.putFault(before);
      else this.o.state.removeFault(name);
      // resume failed after the counter moved: put it back as the records are
      if (counting && before) this.o.counting?.start(before);
      else if (counting) this.o.counting?.stop(f);
      throw e;
    }
    this.o.log.info({ dm: name, id: f.id, table: f.faulted }, 'dm fault in force');
    if (f.deadline) this.o.onFault?.();
    return this.toFilter(f);
  }

  /**
   * Load, bounded suspend, resume; on any error the device is resumed with its live table.
   * `suspended` runs while the device is suspended (bios sent now wait for the new table).
   */
  private async swap(name: string, table: string, suspended?: () => void): Promise<void> {
    try {
      await this.o.dm.load(name, table);
    } catch (e) {
      await this.o.dm.clear(name).catch(() => undefined);
      throw precondition(`backend dm: loading the table into ${name} failed, nothing changed: ${(e as Error).message}`);
    }
    try {
      await this.o.dm.suspend(name);
    } catch (e) {
      const why = (e as DmsetupError).timedOut ? 'the suspend did not finish (in-flight I/O did not complete)' : (e as Error).message;
      await this.o.dm.clear(name).catch(() => undefined);
      const resumed = await this.o.dm.resume(name).then(() => 'resumed with its previous table', (r: Error) => `resume failed too: ${r.message}`);
      throw precondition(`backend dm: suspending ${name} failed (${why}); ${resumed}`);
    }
    suspended?.();
    await this.o.dm.resume(name);
  }

  /** Throws FAILED_PRECONDITION when the live table is neither ours nor the original. */
  private async checkUnchanged(f: DmFault): Promise<'faulted' | 'original'> {
    const live = await this.o.dm.table(f.name);
    if (normalize(live) === normalize(f.faulted)) return 'faulted';
    if (normalize(live) === normalize(f.original)) return 'original';
    throw precondition(
      `backend dm: the table of ${f.name} was changed by someone else while faulted (filter ${f.id}); not overwritten. ` +
        `live table:\n${live.trim()}\nexpected (loaded by iofilter):\n${f.faulted.trim()}\noriginal (restore by hand with dmsetup load/suspend/resume if right):\n${f.original.trim()}`,
    );
  }

  /** Puts the original table back and forgets the fault. Handles a crash before or during the swap. */
  async restore(f: DmFault, why: string): Promise<void> {
    let info;
    try {
      info = await this.o.dm.info(f.name);
    } catch (e) {
      // the device is gone (removed by its owner): nothing is faulted any more
      this.o.log.warn({ dm: f.name, id: f.id, err: (e as Error).message }, 'dm device of a fault is gone; forgetting the fault');
      this.o.counting?.stop(f);
      this.o.state.removeFault(f.name);
      return;
    }
    if (info.suspended) {
      // a crash between suspend and resume: drop whatever was loaded, run the live table again
      await this.o.dm.clear(f.name).catch(() => undefined);
      await this.o.dm.resume(f.name);
    }
    const state = await this.checkUnchanged(f);
    // the counter goes with the faulted table (before the record: a crash in between leaves the record, not the counter)
    if (state === 'faulted') await this.swap(f.name, f.original, () => this.o.counting?.stop(f));
    else this.o.counting?.stop(f);
    this.o.state.removeFault(f.name);
    this.o.log.info({ dm: f.name, id: f.id, why, wasInForce: state === 'faulted' }, 'dm table restored');
  }

  async delete(key: BackendKey): Promise<number> {
    const f = this.o.state.faults().find((x) => ('id' in key ? x.id === key.id : x.devno === `${key.device.major}:${key.device.minor}`));
    if (!f) return 0;
    await this.restore(f, 'deleted');
    return 1;
  }

  /** Restores every fault; one that cannot be restored is reported after the others are done. */
  async clear(): Promise<number> {
    let n = 0;
    let first: Error | null = null;
    for (const f of this.o.state.faults()) {
      try {
        await this.restore(f, 'cleared');
        n++;
      } catch (e) {
        first ??= e as Error;
      }
    }
    if (first) throw first instanceof RpcError ? first : precondition((first as Error).message);
    return n;
  }

  async restoreExpired(): Promise<number> {
    let n = 0;
    for (const f of this.o.state.faults()) {
      if (!f.deadline || remainingMs(f.deadline, this.o.clock) > 0) continue;
      try {
        await this.restore(f, 'expired');
        n++;
      } catch (e) {
        const key = `${f.name}:${f.id}`;
        if (!this.reported.has(key)) this.o.log.error({ dm: f.name, id: f.id, err: (e as Error).message }, 'expired dm fault cannot be restored');
        this.reported.add(key);
      }
    }
    return n;
  }

  owns(id: number): boolean {
    return this.o.state.faults().some((f) => f.id === id);
  }

  hasDeadlines(): boolean {
    return this.o.state.faults().some((f) => f.deadline);
  }

  /** Ms to the nearest deadline (Infinity: none). */
  nextDeadlineMs(): number {
    const left = this.o.state.faults().filter((f) => f.deadline).map((f) => remainingMs(f.deadline!, this.o.clock));
    return left.length ? Math.min(...left) : Infinity;
  }

  list(): Filter[] {
    return this.o.state.faults().map((f) => this.toFilter(f));
  }

  /** The fault on a device, if any (the service keeps bpf and dm filters off each other's devices). */
  faultOn(dev: { major: number; minor: number }): DmFault | undefined {
    return this.o.state.faults().find((f) => f.devno === `${dev.major}:${dev.minor}`);
  }

  private toFilter(f: DmFault): Filter {
    const [major, minor] = f.devno.split(':').map(Number);
    let device;
    try {
      device = deviceRef(resolveDevice(f.devno, this.sysfs));
    } catch {
      device = { major, minor, name: f.name };
    }
    const left = f.deadline ? remainingMs(f.deadline, this.o.clock) : 0;
    const c = this.o.counting?.view(f) ?? { counted: false, why: NOT_COUNTED };
    const n = (i: number, k: 'matched' | 'failed') => (c.counted ? String(c.ranges[i][k]) : '0');
    return {
      device,
      wholeDevice: f.whole,
      ranges: f.ranges.map((r, i) => ({ start: r.start, end: r.end, ops: r.ops.map(opToWire), matched: n(i, 'matched'), failed: n(i, 'failed') })),
      hasExpiry: !!f.deadline,
      remainingMs: String(left),
      probability: 1,
      maxFailures: '0',
      failures: '0',
      id: f.id,
      matchedIos: c.counted ? String(c.matchedIos) : '0',
      failedIos: c.counted ? String(c.failedIos) : '0',
      backend: 'BACKEND_DM',
      dm: { name: f.name, originalTable: f.original, table: f.faulted },
      notCounted: c.counted ? '' : c.why,
      fault: f.fault ?? faultToWire(EIO),
    };
  }
}
