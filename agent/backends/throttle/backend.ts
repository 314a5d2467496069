// The throttle backend: a filter is one cgroup's cgroup v2 io.max line for one whole
// disk (rbps, wbps, riops, wiops). The line the cgroup had for that disk is persisted
// BEFORE the write; delete, clear and TTL (the agent, or the watchdog when the agent is
// gone) write it back exactly, or remove the line when there was none, and check the
// file then shows exactly that. A line someone else changed meanwhile is reported, not
// overwritten. io.max acts in the block layer before a bio is submitted, independently
// of the bpf program and of dm tables, so throttle filters stand beside other filters
// on the same device (`exclusive` false); one per (device, cgroup).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as native from '../../../native';
import { describeFault } from '../../../proto/faults';
import type { BackendCapability } from '../../../proto/gen/iofilter/v1/BackendCapability';
import type { Fault } from '../../../proto/gen/iofilter/v1/Fault';
import type { Filter } from '../../../proto/gen/iofilter/v1/Filter';
import { CgroupResolver, Cgroup2Mount } from '../../cgroup';
import { DeviceInfo, resolveDevice } from '../../devices';
import { precondition, RpcError } from '../../errors';
import type { FaultSpec } from '../../faults';
import { faultToWire } from '../../faults';
import type { Logger } from '../../log';
import { deviceRef } from '../../wire';
import { Clock, Deadline, deadlineIn, remainingMs, StateDir } from '../dm/state';
import type { BackendKey, PersistedBackend } from '../types';
import { badLimit, clearLine, IoMaxError, limitsOf, lineFor, readIoMax, renderLine, writeIoMax } from './iomax';

const realFiles: IoMaxFiles = { read: readIoMax, write: writeIoMax };
import { cgroupRefusal, hostRefusal } from './probe';

export interface ThrottleOptions {
  state: StateDir;
  clock: Clock;
  log: Logger;
  sysfs?: string;
  cgroups?: CgroupResolver;
  kallsyms?: string;
  onFault?: () => void;
  /** How io.max files are read and written (tests: a fake kernel). */
  io?: IoMaxFiles;
}

export interface IoMaxFiles {
  read(file: string): string;
  write(file: string, line: string): void;
}

export interface ThrottleRecord {
  version: 1;
  id: number;
  devno: string; // MAJ:MIN of the disk
  size: string; // sectors, for Status
  cgroup: { id: string; path: string; dir: string; fromPid?: number };
  original: string | null; // the cgroup's io.max line for the disk before, byte for byte; null: none
  line: string; // the line in force
  deadline: Deadline | null;
  createdUnixMs: number;
  fault: Fault;
}

const KIND = 'throttle';
export const NOT_COUNTED = 'not counted: io.max holds I/O back in the block layer; no program sees it';
const keyOf = (devno: string, cgroupId: string) => `${devno.replace(':', '_')}-${cgroupId}`;

export class ThrottleBackend implements PersistedBackend {
  readonly name = 'throttle' as const;
  readonly exclusive = false;
  private cap: BackendCapability = { backend: 'BACKEND_THROTTLE', available: false, reason: 'not probed yet', detail: '' };
  private readonly reported = new Set<string>();
  private readonly cgroups: CgroupResolver;

  constructor(readonly o: ThrottleOptions) {
    this.cgroups = o.cgroups ?? new CgroupResolver();
  }

  private get io(): IoMaxFiles {
    return this.o.io ?? realFiles;
  }

  private get sysfs() {
    return this.o.sysfs ?? '/sys';
  }

  async probe(): Promise<BackendCapability> {
    let m: Cgroup2Mount;
    try {
      m = this.cgroups.mount();
    } catch (e) {
      return (this.cap = { backend: 'BACKEND_THROTTLE', available: false, reason: (e as Error).message, detail: '' });
    }
    const h = hostRefusal(m, this.o.kallsyms);
    this.cap = { backend: 'BACKEND_THROTTLE', available: !h.reason, reason: h.reason ?? h.note, detail: h.reason ? '' : `cgroup v2 io.max (rbps, wbps, riops, wiops) under ${m.dir}` };
    return this.cap;
  }

  capability(): BackendCapability {
    return this.cap;
  }

  private records(): ThrottleRecord[] {
    return this.o.state.records<ThrottleRecord>(KIND);
  }

  async refusal(spec: native.FilterSpec, dev: DeviceInfo, fault: FaultSpec): Promise<string | null> {
    return this.plan(spec, dev, fault).refusal ?? null;
  }

  private plan(spec: native.FilterSpec, dev: DeviceInfo, fault: FaultSpec): { refusal?: string; dir?: string; line?: string } {
    if (fault.kind !== 'throttle') {
      const by = fault.kind === 'error' ? (fault.status.tag === 'IOERR' ? 'the bpf backend or the dm backend' : 'the block error injection backend') : 'the dm backend (on a dm device)';
      return { refusal: `the throttle backend serves throttle faults (cgroup v2 io.max) only; ${describeFault(faultToWire(fault))} is served by ${by}` };
    }
    if (!this.cap.available) return { refusal: `throttle backend unavailable: ${this.cap.reason}` };
    if (!spec.cgroup || spec.meta?.cgroupPath === undefined) return { refusal: 'no cgroup scope: io.max limits one cgroup\'s I/O; give cgroup_path, cgroup_id or pid' };
    if (spec.ranges.length) return { refusal: 'ranges: io.max limits a whole device, not sectors; set the filter on the whole device (no ranges)' };
    if (spec.probability !== undefined && spec.probability < 1) return { refusal: `probability ${spec.probability}: io.max limits every I/O of the cgroup (the bpf backend draws per I/O)` };
    if (spec.maxFailures) return { refusal: 'max_failures: io.max fails nothing, it only holds I/O back' };
    if (spec.eventsSpared || (spec.eventsPerSecond ?? 0) > 0) return { refusal: 'events: throttle filters have no per-I/O events (set events_per_second 0)' };
    if (dev.partition)
      return { refusal: `${dev.name} is a partition of ${dev.disk.name}: io.max limits whole disks (the kernel refuses a partition's MAJ:MIN with ENODEV); set the filter on /dev/${dev.disk.name}, which limits the cgroup's I/O to all of its partitions` };
    const bad = badLimit(limitsOf(fault));
    if (bad) return { refusal: bad };
    let m: Cgroup2Mount;
    try {
      m = this.cgroups.mount();
    } catch (e) {
      return { refusal: (e as Error).message };
    }
    const rel = spec.meta.cgroupPath;
    const why = cgroupRefusal(m, rel);
    if (why) return { refusal: why };
    const dir = path.join(m.dir, ...rel.split('/').filter(Boolean));
    let ino: bigint;
    try {
      ino = fs.statSync(dir, { bigint: true }).ino;
    } catch {
      return { refusal: `cgroup ${rel} is gone (removed after it was resolved); try again` };
    }
    if (ino !== spec.cgroup.id) return { refusal: `cgroup ${rel} is not the cgroup resolved (id ${spec.cgroup.id}, now ${ino}): it was replaced; try again` };
    return { dir, line: renderLine(`${dev.major}:${dev.minor}`, limitsOf(fault))! };
  }

  async set(spec: native.FilterSpec, dev: DeviceInfo, fault: FaultSpec): Promise<Filter> {
    const p = this.plan(spec, dev, fault);
    if (p.refusal) throw precondition(`backend throttle: ${p.refusal}`);
    const devno = `${dev.major}:${dev.minor}`;
    const cgId = String(spec.cgroup!.id);
    const file = path.join(p.dir!, 'io.max');
    const before = this.records().find((r) => r.devno === devno && r.cgroup.id === cgId);
    let live: string | null;
    try {
      live = lineFor(this.io.read(file), devno);
    } catch (e) {
      throw precondition(`backend throttle: ${file}: ${(e as Error).message}; nothing changed`);
    }
    if (before && live !== before.line && live !== before.original) throw this.changed(before, live); // replacing our own line only
    const r: ThrottleRecord = {
      version: 1,
      id: before?.id ?? this.o.state.nextId(),
      devno,
      size: String(dev.size),
      cgroup: { id: cgId, path: spec.meta!.cgroupPath!, dir: p.dir!, ...(spec.meta?.fromPid && { fromPid: spec.meta.fromPid }) },
      original: before ? before.original : live,
      line: p.line!,
      deadline: spec.ttlMs ? deadlineIn(spec.ttlMs, this.o.clock) : null,
      createdUnixMs: this.o.clock.realtimeMs(),
      fault: faultToWire(fault),
    };
    const key = keyOf(devno, cgId);
    this.o.state.putRecord(KIND, key, r); // before the write: a crash from here on still knows the original line
    try {
      this.write(file, r.line, r.line);
    } catch (e) {
      // put back what was there (our earlier line, or the original), then the record
      try {
        const now = lineFor(this.io.read(file), devno);
        if (now !== live) this.write(file, live ?? clearLine(devno), live);
      } catch (x) {
        this.o.log.error({ file, err: (x as Error).message }, 'io.max could not be put back after a failed write');
        throw precondition(`backend throttle: writing ${file} failed (${(e as Error).message}), and putting back its line failed too (${(x as Error).message}); the record is kept for restore`);
      }
      if (before) this.o.state.putRecord(KIND, key, before);
      else this.o.state.removeRecord(KIND, key);
      throw precondition(`backend throttle: writing "${r.line}" to ${file} failed, nothing changed: ${(e as Error).message}`);
    }
    this.o.log.info({ cgroup: r.cgroup.path, device: devno, id: r.id, line: r.line, was: r.original }, 'io.max throttle in force');
    if (r.deadline) this.o.onFault?.();
    return this.toFilter(r);
  }

  /** Writes `line` and checks the device's line then reads `expect` (null: no line). */
  private write(file: string, line: string, expect: string | null): void {
    this.io.write(file, line);
    const devno = line.split(' ')[0];
    const got = lineFor(this.io.read(file), devno);
    if (got !== expect) throw new IoMaxError(`after writing "${line}", ${file} shows ${got === null ? 'no line' : `"${got}"`} for ${devno}, expected ${expect === null ? 'none' : `"${expect}"`}`);
  }

  private changed(r: ThrottleRecord, live: string | null): RpcError {
    return precondition(
      `backend throttle: the io.max line of ${r.cgroup.path} for ${r.devno} was changed by someone else while throttled (filter ${r.id}); not overwritten. ` +
        `now: ${live === null ? '(no line)' : live}; set by iofilter: ${r.line}; before iofilter (restore by hand if right: ` +
        `echo "${r.original ?? clearLine(r.devno)}" > ${path.join(r.cgroup.dir, 'io.max')}): ${r.original ?? '(no line)'}`,
    );
  }

  /** Puts the cgroup's line back as it was and forgets the filter; handles a crash before the write. */
  restore(r: ThrottleRecord, why: string): void {
    const key = keyOf(r.devno, r.cgroup.id);
    const file = path.join(r.cgroup.dir, 'io.max');
    let ino: bigint | null = null;
    try {
      ino = fs.statSync(r.cgroup.dir, { bigint: true }).ino;
    } catch {
      /* removed */
    }
    if (ino === null || String(ino) !== r.cgroup.id || !fs.existsSync(path.join(this.sysfs, 'dev', 'block', r.devno))) {
      // its cgroup or its disk is gone, and the kernel dropped the line with it
      this.o.log.warn({ cgroup: r.cgroup.path, device: r.devno, id: r.id }, 'the cgroup or the disk of a throttle is gone; forgetting it');
      this.o.state.removeRecord(KIND, key);
      return;
    }
    const live = lineFor(this.io.read(file), r.devno);
    if (live !== r.original) {
      if (live !== r.line) throw this.changed(r, live);
      try {
        this.write(file, r.original ?? clearLine(r.devno), r.original);
      } catch (e) {
        throw precondition(`backend throttle: restoring ${file} failed: ${(e as Error).message}`);
      }
    }
    this.o.state.removeRecord(KIND, key);
    this.o.log.info({ cgroup: r.cgroup.path, device: r.devno, id: r.id, why, restored: r.original ?? '(no line)', wasInForce: live === r.line }, 'io.max restored');
  }

  async delete(key: BackendKey): Promise<number> {
    const rs = this.records().filter((r) => ('id' in key ? r.id === key.id : r.devno === `${key.device.major}:${key.device.minor}`));
    for (const r of rs) this.restore(r, 'deleted');
    return rs.length;
  }

  /** Deletes the device's throttle for the cgroup `cgroupId`, or for a cgroup whose path was `gonePath` (removed since). */
  async deleteScoped(dev: { major: number; minor: number }, cg: { id: bigint } | { path: string }): Promise<number> {
    const rs = this.onDevice(dev).filter((r) => ('id' in cg ? r.cgroup.id === String(cg.id) : r.cgroup.path === cg.path));
    for (const r of rs) this.restore(r, 'deleted');
    return rs.length;
  }

  /** Its filters on a device (any cgroup). */
  onDevice(dev: { major: number; minor: number }): ThrottleRecord[] {
    return this.records().filter((r) => r.devno === `${dev.major}:${dev.minor}`);
  }

  async clear(): Promise<number> {
    let n = 0;
    let first: Error | null = null;
    for (const r of this.records()) {
      try {
        this.restore(r, 'cleared');
        n++;
      } catch (e) {
        first ??= e as Error;
      }
    }
    if (first) throw first instanceof RpcError ? first : precondition(first.message);
    return n;
  }

  async restoreExpired(): Promise<number> {
    let n = 0;
    for (const r of this.records()) {
      if (!r.deadline || remainingMs(r.deadline, this.o.clock) > 0) continue;
      try {
        this.restore(r, 'expired');
        n++;
      } catch (e) {
        const k = `${keyOf(r.devno, r.cgroup.id)}:${r.id}`;
        if (!this.reported.has(k)) this.o.log.error({ cgroup: r.cgroup.path, device: r.devno, id: r.id, err: (e as Error).message }, 'expired throttle cannot be restored');
        this.reported.add(k);
      }
    }
    return n;
  }

  owns(id: number): boolean {
    return this.records().some((r) => r.id === id);
  }

  faultOn(dev: { major: number; minor: number }): { id: number } | undefined {
    return this.onDevice(dev)[0];
  }

  hasDeadlines(): boolean {
    return this.records().some((r) => r.deadline);
  }

  nextDeadlineMs(): number {
    const left = this.records().filter((r) => r.deadline).map((r) => remainingMs(r.deadline!, this.o.clock));
    return left.length ? Math.min(...left) : Infinity;
  }

  list(): Filter[] {
    return this.records().map((r) => this.toFilter(r));
  }

  private toFilter(r: ThrottleRecord): Filter {
    const [major, minor] = r.devno.split(':').map(Number);
    let device;
    try {
      device = deviceRef(resolveDevice(r.devno, this.sysfs));
    } catch {
      device = { major, minor, sizeSectors: r.size };
    }
    return {
      device,
      wholeDevice: true,
      ranges: [{ start: '0', end: String(BigInt(r.size) - 1n), ops: ['OP_READ', 'OP_WRITE'], matched: '0', failed: '0' }],
      hasExpiry: !!r.deadline,
      remainingMs: String(r.deadline ? remainingMs(r.deadline, this.o.clock) : 0),
      probability: 1,
      maxFailures: '0',
      failures: '0',
      id: r.id,
      matchedIos: '0',
      failedIos: '0',
      cgroup: { id: r.cgroup.id, path: r.cgroup.path, fromPid: r.cgroup.fromPid ?? 0 },
      backend: 'BACKEND_THROTTLE',
      notCounted: NOT_COUNTED,
      fault: r.fault,
    };
  }
}
