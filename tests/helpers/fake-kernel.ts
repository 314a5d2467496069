// Unit-tier stand-ins: an in-memory KernelApi (no BPF) and a fake sysfs tree, so the
// agent's real validation, resolution and service code can run without root.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type * as native from '../../native';
import type { KernelApi } from '../../agent/service';
import type { KernelEvent } from '../../agent/events';

const sameDev = (a: native.Device, b: native.Device) => a.major === b.major && a.minor === b.minor;

/** Filters keyed by (device, cgroup id), as the native table keys them; ids handed out from 1. */
export class FakeFilterer implements native.Filterer {
  readonly filters: native.FilterInfo[] = [];
  /** Every spec putFilter accepted, in order. */
  readonly specs: native.FilterSpec[] = [];
  puts = 0;
  private nextId = 1;
  constructor(readonly state: native.AttachState) {}
  putFilter(spec: native.FilterSpec): native.FilterInfo {
    this.puts++;
    this.specs.push(spec);
    const ranges = spec.ranges.length ? spec.ranges : [{ start: 0n, end: (spec.size ?? 1n) - 1n, ops: spec.wholeOps ?? ['read', 'write'] }];
    const old = this.select({ device: spec.device, cgroupId: spec.cgroup?.id });
    const info: native.FilterInfo = {
      id: old[0]?.id ?? this.nextId++,
      device: spec.device, disk: spec.disk, offset: spec.offset, size: spec.size ?? 0n, diskseq: spec.diskseq ?? 0n, whole: !spec.ranges.length,
      ranges: ranges.map((r) => ({ ...r, matched: 0n, failed: 0n })),
      remainingMs: spec.ttlMs ? spec.ttlMs : null, probability: spec.probability ?? 1,
      maxFailures: spec.maxFailures ?? 0n, failures: 0n, matchedIos: 0n, failedIos: 0n,
      cgroup: spec.cgroup ?? null, eventsPerSecond: spec.eventsPerSecond ?? 1000, eventsSpared: !!spec.eventsSpared, eventsDropped: 0n,
      meta: { ...spec.meta },
    };
    if (old.length) this.filters.splice(this.filters.indexOf(old[0]), 1, info);
    else this.filters.push(info);
    return info;
  }
  private select(key: native.FilterKey): native.FilterInfo[] {
    if ('id' in key) return this.filters.filter((f) => f.id === key.id);
    return this.filters.filter((f) => sameDev(f.device, key.device) && (key.allScopes || f.cgroup?.id === key.cgroupId));
  }
  getFilter(key: native.FilterKey) { return this.select(key)[0] ?? null; }
  deleteFilter(key: native.FilterKey) {
    const gone = this.select(key);
    for (const f of gone) this.filters.splice(this.filters.indexOf(f), 1);
    return gone.length;
  }
  clearFilters() { return this.filters.splice(0).length; }
  listFilters() { return [...this.filters]; }
  reapExpired() { return 0; } // the fake's filters never run down
  programStats() { return [{ progId: 1, name: 'iofilter_fake', recursionMisses: 0n, runCount: 0n, linkMissed: null }]; }
  counters() { return { truncatedIos: 0n, eventsLost: 0n }; }
  async detach() { this.filters.splice(0); }

  close() { this.onEvents = null; }

  // The native event API (ring-buffer reader): tests push batches with emit().
  private onEvents: ((batch: KernelEvent[]) => void) | null = null;
  startEvents(cb: (batch: KernelEvent[]) => void) {
    if (this.onEvents) throw new Error('startEvents: already started (one consumer per handle)');
    this.onEvents = cb;
  }
  stopEvents() { this.onEvents = null; }
  get eventsStarted() { return this.onEvents !== null; }
  /** Delivers one batch as the native reader thread would; false if nobody has started events. */
  emit(batch: KernelEvent[]): boolean {
    this.onEvents?.(batch);
    return this.onEvents !== null;
  }
}

/** A kernel event with sensible defaults: a 4 KiB write to 7:0 at sector 100, would fail, filter 1 range 0. */
export function kernelEvent(over: Partial<KernelEvent> = {}): KernelEvent {
  return {
    timeUnixNs: 1_700_000_000_123_456_789n, dev: { major: 7, minor: 0 }, disk: { major: 7, minor: 0 },
    sector: 100n, devSector: 100n, nrSectors: 8, ops: ['write'], filterId: 1, rangeIndex: 0,
    outcome: 'would_fail', pid: 4242, comm: 'dd', cgroupId: 77n, ...over,
  };
}

/** fileExtents() answers: by real path, what FIEMAP would say, or an error (with the native code) to throw. */
export type FakeFiles = Map<string, native.FileExtents | { code: string; message: string }>;

export function fakeKernel(opts: { cgroups?: boolean } = {}): KernelApi & { filterer?: FakeFilterer; files: FakeFiles } {
  const k: KernelApi & { filterer?: FakeFilterer; files: FakeFiles } = {
    files: new Map(),
    fileExtents: async (p) => {
      const a = k.files.get(p);
      if (!a) throw new Error(`fake kernel: no extents scripted for ${p}`);
      if ('code' in a) throw Object.assign(new Error(a.message), { code: a.code });
      return a;
    },
    limits: () => ({ maxRanges: 64, maxRangesPerFilter: 64, maxFilters: 16, maxOverlap: 8, maxRangesPerIo: 8 }),
    probe: async () => ({
      kernelRelease: '6.1.0-fake', btf: true, lockdown: 'none',
      modes: [
        { mode: 'fmod_ret', available: false, hook: 'fmod_ret/should_fail_bio', reason: 'kernel built without CONFIG_FUNCTION_ERROR_INJECTION' },
        { mode: 'kprobe', available: false, hook: 'kprobe/should_fail_bio', reason: 'kprobes unavailable' },
        { mode: 'observe', available: true, hook: 'tp_btf/block_bio_queue', reason: '' },
      ],
      features: {
        fetchAtomics: true, pinnableKprobe: true, recursionMisses: true, gracePeriod: 'membarrier', cgroups: opts.cgroups ?? true,
        notes: opts.cgroups === false ? ['kernel built without CONFIG_BLK_CGROUP'] : [],
      },
    }),
    lock: (pinDir) => ({ pinDir, release: () => undefined }),
    adopt: async () => null,
    attach: async (o) => {
      k.filterer = new FakeFilterer({
        mode: 'observe', pinDir: o.lock.pinDir, adopted: false, pinned: true, progIds: [1], linkIds: [2], mapIds: [3],
        hook: 'tp_btf/block_bio_queue', maxDisks: 1024, selfTest: null,
      });
      return k.filterer;
    },
  };
  return k;
}

/** A sysfs tree with disk 7:0 (loop0, 1 GiB) and its partition 7:1 (loop0p1, start 2048, 64 MiB). */
export function fakeSysfs(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-sysfs-'));
  const disk = path.join(root, 'devices', 'virtual', 'block', 'loop0');
  const part = path.join(disk, 'loop0p1');
  fs.mkdirSync(part, { recursive: true });
  fs.mkdirSync(path.join(root, 'dev', 'block'), { recursive: true });
  fs.writeFileSync(path.join(disk, 'dev'), '7:0\n');
  fs.writeFileSync(path.join(disk, 'size'), '2097152\n');
  fs.writeFileSync(path.join(part, 'dev'), '7:1\n');
  fs.writeFileSync(path.join(part, 'partition'), '1\n');
  fs.writeFileSync(path.join(part, 'start'), '2048\n');
  fs.writeFileSync(path.join(part, 'size'), '131072\n');
  fs.symlinkSync(disk, path.join(root, 'dev', 'block', '7:0'));
  fs.symlinkSync(part, path.join(root, 'dev', 'block', '7:1'));
  return root;
}
