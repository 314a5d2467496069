// Counting dm filters. A dm table fails I/O without any program seeing it, so where the
// bpf program is attached in OBSERVE mode each dm filter gets a companion: an observe
// filter in the bpf maps on the dm device, with the filter's ranges and ops (the ops
// its segments fail: table.ts), so the program counts what the table fails. Never in
// an enforcing mode: a filter there would fail the I/O a second time.
// The companion is put and deleted while the device is suspended during the table swap
// (backend.ts), so I/O submitted after SetFilter returns and before DeleteFilter is
// called is counted exactly when the table fails it. It carries the dm filter's TTL,
// ending a little BEFORE the dm deadline (uptime has 10 ms steps), so it never outlives
// the table even when the watchdog, which has no bpf handle, restores it. It is not a
// bpf filter of its own: Status shows its counters on the dm filter, events carry the
// dm filter's id, and a bpf filter on a device with a dm fault can only be a companion
// (the service keeps bpf and dm filters off each other's devices).
import type * as native from '../../../native';
import { resolveDevice } from '../../devices';
import type { KernelEvent, EventSource } from '../../events';
import type { Logger } from '../../log';
import { Clock, DmFault, remainingMs, StateDir } from './state';

/** What the table does to the I/O it matches: error kinds fail it, other kinds (delay, drop-writes, corrupt) fail nothing. */
export const failing = (f: DmFault) => !f.fault || !!f.fault.error;

export interface DmCounting {
  /** The table of `f` is now loaded and the device suspended: count from here. Never throws. */
  start(f: DmFault): void;
  /** The original table is loaded and the device suspended (or the fault is gone): stop counting. Never throws. */
  stop(f: DmFault): void;
  view(f: DmFault): DmCounts;
}

export type DmCounts =
  | { counted: true; ranges: { matched: bigint; failed: bigint }[]; matchedIos: bigint; failedIos: bigint }
  | { counted: false; why: string };

/** /proc/uptime counts in 10 ms steps: the companion ends this much before the dm deadline. */
export const RESOLUTION_MS = 10;

/** The companion observe filter of `f` on its device (`size`: the device's sectors); or why none. */
export function companionSpec(f: DmFault, size: bigint, clock: Clock): native.FilterSpec | string {
  const [major, minor] = f.devno.split(':').map(Number);
  let ttlMs: number | undefined;
  if (f.deadline) {
    const left = remainingMs(f.deadline, clock) - RESOLUTION_MS;
    if (left <= 0) return 'its deadline has passed';
    ttlMs = left;
  }
  const device = { major, minor };
  const spec: native.FilterSpec = { device, disk: device, offset: 0n, size, ranges: f.ranges.map((r) => ({ start: BigInt(r.start), end: BigInt(r.end), ops: [...r.ops] })) };
  if (ttlMs) spec.ttlMs = ttlMs;
  if (f.eventsPerSecond !== undefined) spec.eventsPerSecond = f.eventsPerSecond;
  return spec;
}

/** The dm filter's counters from its companion: `failed` only for kinds that fail I/O. */
export function countsOf(f: DmFault, c: native.FilterInfo): DmCounts {
  const fails = failing(f);
  return {
    counted: true,
    ranges: f.ranges.map((_, i) => ({ matched: c.ranges[i]?.matched ?? 0n, failed: fails ? (c.ranges[i]?.failed ?? 0n) : 0n })),
    matchedIos: c.matchedIos,
    failedIos: fails ? c.failedIos : 0n,
  };
}

export class Companions implements DmCounting {
  /** Why a dm filter's companion could not be put (by dm id). */
  private readonly why = new Map<number, string>();
  /** Last counters of companions the bpf reaper is about to remove (expired just before their dm filter). */
  private readonly final = new Map<number, native.FilterInfo>();
  /** Companion bpf id -> its dm filter, for events. */
  private readonly ids = new Map<number, DmFault>();

  constructor(
    private readonly bpf: () => native.Filterer | null,
    private readonly state: StateDir,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly sysfs = '/sys',
  ) {}

  private observing(): native.Filterer | null {
    const b = this.bpf();
    return b && b.state.mode === 'observe' ? b : null;
  }

  private key(f: DmFault): native.FilterKey {
    const [major, minor] = f.devno.split(':').map(Number);
    return { device: { major, minor } };
  }

  start(f: DmFault): void {
    const b = this.observing();
    this.why.delete(f.id);
    this.final.delete(f.id);
    if (!b) return;
    try {
      const spec = companionSpec(f, resolveDevice(f.devno, this.sysfs).size, this.clock);
      if (typeof spec === 'string') throw new Error(spec);
      const info = b.putFilter(spec);
      for (const [k, v] of this.ids) if (v.id === f.id) this.ids.delete(k);
      this.ids.set(info.id, f);
    } catch (e) {
      b.deleteFilter(this.key(f)); // an old companion must not count a new table
      this.why.set(f.id, `its observe counter could not be set: ${(e as Error).message}`);
      this.log.warn({ dm: f.name, id: f.id, err: (e as Error).message }, 'dm filter not counted');
    }
  }

  stop(f: DmFault): void {
    this.why.delete(f.id);
    this.final.delete(f.id);
    for (const [k, v] of this.ids) if (v.id === f.id) this.ids.delete(k);
    try {
      this.bpf()?.deleteFilter(this.key(f));
    } catch (e) {
      this.log.warn({ dm: f.name, id: f.id, err: (e as Error).message }, 'deleting the observe counter of a dm filter failed');
    }
  }

  view(f: DmFault): DmCounts {
    const b = this.bpf();
    if (!b) return { counted: false, why: 'not counted: the bpf program is not attached (an observe attach counts dm filters: attach --mode observe)' };
    if (b.state.mode !== 'observe')
      return { counted: false, why: `not counted: the bpf program is attached in ${b.state.mode} mode; dm filters are counted under an observe attach only (an enforcing filter would fail their I/O a second time)` };
    const c = b.getFilter(this.key(f)) ?? this.final.get(f.id);
    if (!c) return { counted: false, why: `not counted: ${this.why.get(f.id) ?? 'it has no observe counter in the bpf maps'}` };
    return countsOf(f, c);
  }

  /** Whether this bpf filter is a dm filter's companion (unscoped, on a device with a dm fault). */
  isCompanion(x: native.FilterInfo): boolean {
    if (x.cgroup && x.cgroup.id) return false;
    const devno = `${x.device.major}:${x.device.minor}`;
    return this.state.faults().some((f) => f.devno === devno);
  }

  /** The dm filter a companion bpf id counts for. */
  dmOf(bpfId: number): DmFault | undefined {
    return this.ids.get(bpfId);
  }

  /** Keeps the counters of companions whose TTL has passed, before the bpf reaper removes them. */
  snapshot(): void {
    const b = this.bpf();
    if (!b) return;
    for (const f of this.state.faults()) {
      const c = b.getFilter(this.key(f));
      if (c && c.remainingMs === 0) this.final.set(f.id, c);
    }
  }

  /**
   * After an attach or an agent start: a companion for each dm fault that has none (counted
   * from now), the ids of those adopted with the pins. Not observing: nothing to do.
   */
  reconcile(): void {
    const b = this.observing();
    if (!b) return;
    for (const f of this.state.faults()) {
      const c = b.getFilter(this.key(f));
      if (c) this.ids.set(c.id, f);
      else this.start(f);
    }
  }

  /** Events of companions as the dm filter's: its id; FAILED when the table fails I/O, else SPARED (nothing failed). */
  events(src: EventSource): EventSource {
    return (onEvents) =>
      src((batch: KernelEvent[]) => {
        for (const e of batch) {
          const f = this.ids.get(e.filterId);
          if (!f) continue;
          e.filterId = f.id;
          e.outcome = failing(f) ? 'failed' : 'spared';
        }
        onEvents(batch);
      });
  }
}
