// Unit-tier stand-ins: an in-memory KernelApi (no BPF) and a fake sysfs tree, so the
// agent's real validation, resolution and service code can run without root.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type * as native from '../../native';
import type { KernelApi } from '../../agent/service';
import type { KernelEvent } from '../../agent/events';

export class FakeFilterer implements native.Filterer {
  readonly filters = new Map<string, native.FilterInfo>();
  puts = 0;
  constructor(readonly state: native.AttachState) {}
  putFilter(spec: native.FilterSpec): native.FilterInfo {
    this.puts++;
    const ranges = spec.ranges.length ? spec.ranges : [{ start: 0n, end: (spec.size ?? 1n) - 1n, ops: spec.wholeOps ?? ['read', 'write'] }];
    const info: native.FilterInfo = {
      device: spec.device, disk: spec.disk, offset: spec.offset, size: spec.size ?? 0n, whole: !spec.ranges.length,
      ranges: ranges.map((r) => ({ ...r, matched: 0n, failed: 0n })),
      remainingMs: spec.ttlMs ? spec.ttlMs : null, probability: spec.probability ?? 1,
      maxFailures: spec.maxFailures ?? 0n, failures: 0n,
    };
    this.filters.set(`${spec.device.major}:${spec.device.minor}`, info);
    return info;
  }
  getFilter(d: native.Device) { return this.filters.get(`${d.major}:${d.minor}`) ?? null; }
  deleteFilter(d: native.Device) { return this.filters.delete(`${d.major}:${d.minor}`); }
  listFilters() { return [...this.filters.values()]; }
  reapExpired() { return 0; }
  async detach() { this.filters.clear(); }
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

export function fakeKernel(): KernelApi & { filterer?: FakeFilterer } {
  const k: KernelApi & { filterer?: FakeFilterer } = {
    limits: () => ({ maxRanges: 64, maxFilters: 16 }),
    probe: async () => ({
      kernelRelease: '6.1.0-fake', btf: true, lockdown: 'none',
      modes: [
        { mode: 'fmod_ret', available: false, hook: 'fmod_ret/should_fail_bio', reason: 'kernel built without CONFIG_FUNCTION_ERROR_INJECTION' },
        { mode: 'kprobe', available: false, hook: 'kprobe/should_fail_bio', reason: 'kprobes unavailable' },
        { mode: 'observe', available: true, hook: 'tp_btf/block_bio_queue', reason: '' },
      ],
    }),
    adopt: async () => null,
    attach: async (opts) => {
      k.filterer = new FakeFilterer({ mode: 'observe', pinDir: opts.pinDir ?? '/x', adopted: false, progIds: [1], linkIds: [2], mapIds: [3], hook: 'tp_btf/block_bio_queue', maxDisks: 1024 });
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
