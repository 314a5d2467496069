// The only importer of the native addon (build/Release/iofilter.node): its typed face.
// Everything kernel-facing in the agent, tests and benchmarks goes through here.
import { findUp } from '../common/find-up';

/** Attach modes the program can run in. `observe` counts what would fail, fails nothing. */
export type Mode = 'fmod_ret' | 'kprobe' | 'observe';
export type AttachMode = Mode | 'auto';

export type Op = 'read' | 'write' | 'flush' | 'discard' | 'write_zeroes';

/** Limits compiled into the BPF program (bpf/iofilter.h). */
export interface Limits {
  maxRanges: number; // ranges per disk entry, over the disk and all its partitions
  maxRangesPerFilter: number;
  maxFilters: number; // filters per disk entry (the disk, its partitions, cgroup scopes)
  maxOverlap: number; // ranges that may cover one sector of a disk at once
  maxRangesPerIo: number; // ranges one I/O is judged against per overlap layer
}

export interface ModeCapability {
  mode: Mode;
  available: boolean;
  /** Hook the mode attaches to, e.g. "fmod_ret/should_fail_bio", "tp_btf/block_bio_queue". */
  hook: string;
  /** Why not, in words a person understands (missing config option, lockdown, no hook, known-unsafe kernel). */
  reason: string;
}

/** What this kernel can do for iofilter beyond the modes. */
export interface KernelFeatures {
  /** BPF atomic fetch-add (5.12+): needed for max-failures tickets. */
  fetchAtomics: boolean;
  /** BPF perf links (5.15+): a kprobe link can be pinned and outlive the agent. */
  pinnableKprobe: boolean;
  /** bpf_prog_info.recursion_misses (5.12+). */
  recursionMisses: boolean;
  /** How replaced memory waits for programs still running: synchronize_rcu through a map-in-map update. */
  gracePeriod: string;
  /** cgroup v2 mounted and blkcg in the kernel: cgroup-scoped filters can work. */
  cgroups: boolean;
  notes: string[];
}

export interface Capabilities {
  kernelRelease: string;
  btf: boolean;
  lockdown: string; // "none", "integrity", "confidentiality" or "unknown"
  modes: ModeCapability[];
  features: KernelFeatures;
}

export interface Device {
  major: number;
  minor: number;
}

export interface RangeSpec {
  /** In 512-byte sectors, inclusive, in the named device's own coordinates. */
  start: bigint;
  end: bigint;
  ops: Op[];
}

/** A cgroup v2 scope: matches I/O charged to this cgroup or any descendant. */
export interface CgroupScope {
  id: bigint; // the cgroup's inode number (what bpf_get_current_cgroup_id() returns)
  level: number; // depth below the root (root = 0)
}

/** What user space remembers about a filter for Status; the program never reads it. */
export interface FilterMeta {
  file?: string; // made from this file's extents
  cgroupPath?: string;
  fromPid?: number; // the cgroup was resolved from this pid
}

export interface FilterSpec {
  /** The device named by the user: a whole disk or a partition. Not 0:0. */
  device: Device;
  /** The whole disk holding it (equal to `device` for a disk). */
  disk: Device;
  /** First sector of `device` on `disk` (0n for a disk). */
  offset: bigint;
  /** Size of `device` in sectors; required when `ranges` is empty (whole device). */
  size?: bigint;
  /**
   * The disk's medium (`/sys/block/DISK/diskseq`, 5.15+) the filter is bound to: I/O to
   * the same major:minor on another medium never matches it. Omitted/0n: not bound.
   * Filters of the disk bound to another medium are dropped by this put.
   */
  diskseq?: bigint;
  /** Empty: the whole device, with `wholeOps` (default: all ops). */
  ranges: RangeSpec[];
  wholeOps?: Op[];
  /** Kernel-enforced expiry, from now (CLOCK_BOOTTIME). Omitted/0: never expires. */
  ttlMs?: number;
  /** In (0, 1]; omitted = 1 (every matching I/O). */
  probability?: number;
  /** Fail at most this many I/Os, then let I/O through. Omitted/0n: unlimited. */
  maxFailures?: bigint;
  /** Only I/O charged to this cgroup or a descendant. A filter is identified by (device, cgroup). */
  cgroup?: CgroupScope;
  /** Kernel events (ring buffer) per second for this filter; omitted: 1000; 0: none. */
  eventsPerSecond?: number;
  /** Also emit events for I/O matched but spared (probability, max failures). */
  eventsSpared?: boolean;
  meta?: FilterMeta;
}

export interface RangeInfo extends RangeSpec {
  matched: bigint;
  failed: bigint; // in observe mode: I/Os that would have been failed
}

export interface FilterInfo {
  /** Stable for the filter's lifetime, also across agent restarts (events carry it). */
  id: number;
  device: Device;
  disk: Device;
  offset: bigint;
  size: bigint;
  /** The medium it is bound to (0n: not bound, before 5.15). */
  diskseq: bigint;
  whole: boolean;
  ranges: RangeInfo[]; // in the device's coordinates, in the order given
  /** Remaining time before the kernel stops enforcing it; null = no expiry; 0 = expired. */
  remainingMs: number | null;
  probability: number; // 1 when unset
  maxFailures: bigint; // 0n = unlimited
  failures: bigint; // failures counted against maxFailures
  /** I/Os that matched at least one live range / that it failed (observe: would fail). */
  matchedIos: bigint;
  failedIos: bigint;
  cgroup: CgroupScope | null;
  eventsPerSecond: number;
  eventsSpared: boolean;
  eventsDropped: bigint;
  meta: FilterMeta;
}

/** Which filter to delete: the one of (device, cgroup); every scope of the device; or by id. */
export type FilterKey = { device: Device; cgroupId?: bigint; allScopes?: boolean } | { id: number };

export interface AttachOptions {
  mode: AttachMode;
  /** The exclusive lock on the pin dir (lock()); attach and adopt work under it. */
  lock: PinDirLock;
  /** Disk entries the maps can hold. Default 1024. */
  maxDisks?: number;
  /** Ranges over all disks the range pool can hold. Default 65536. */
  maxRangesTotal?: number;
  /**
   * Prove the hook at attach: one I/O to a private scratch loop device under a private
   * filter must fail (observe: be counted). Default true.
   */
  selfTest?: boolean;
}

export interface SelfTestResult {
  passed: boolean;
  atUnixMs: number;
  detail: string;
}

export interface ProgramStats {
  progId: number;
  name: string;
  /** Runs skipped by the kernel's recursion protection; null where the kernel does not report it (< 5.12). */
  recursionMisses: bigint | null;
  runCount: bigint;
  /**
   * Runs the kprobe itself missed, re-entered on a CPU already in a kprobe: they never
   * reach the program (bpf_link_info perf_event.kprobe.missed). null unless the program
   * is attached through a kprobe perf link on a kernel that reports it (6.7+).
   */
  linkMissed: bigint | null;
}

export interface AttachState {
  mode: Mode;
  pinDir: string;
  /** True when existing pins were adopted instead of attaching again. */
  adopted: boolean;
  /** False when the link could not be pinned (kprobe before 5.15): filters end with this process. */
  pinned: boolean;
  progIds: number[];
  linkIds: number[];
  mapIds: number[];
  hook: string;
  maxDisks: number;
  /** The attach-time self-test; null when it was not run (adopted pins, selfTest: false). */
  selfTest: SelfTestResult | null;
}

/** One matched I/O, from the kernel's ring buffer. */
export interface KernelEvent {
  timeUnixNs: bigint;
  dev: Device; // the device the bio was sent to
  disk: Device;
  sector: bigint; // absolute, on the disk
  devSector: bigint; // in dev's own coordinates
  nrSectors: number;
  ops: Op[];
  filterId: number;
  rangeIndex: number; // first range of the filter it matched, as given (0 for an empty flush)
  outcome: 'failed' | 'would_fail' | 'spared';
  pid: number;
  comm: string;
  cgroupId: bigint;
}

/** A handle on the attached (or adopted) program and its pinned maps. */
export interface Filterer {
  readonly state: AttachState;
  /**
   * Creates or replaces the filter of (device, cgroup) atomically. Bad input throws and
   * changes nothing. When it returns, every I/O that enters the program afterwards
   * is judged by the new filter.
   */
  putFilter(spec: FilterSpec): FilterInfo;
  getFilter(key: FilterKey): FilterInfo | null;
  /** How many filters were deleted. When it returns, no later I/O is failed by them. */
  deleteFilter(key: FilterKey): number;
  /** Deletes every filter; returns how many. */
  clearFilters(): number;
  listFilters(): FilterInfo[];
  /** Removes expired filters from the maps (the program already ignores them). Returns how many. */
  reapExpired(): number;
  /** Current run statistics of the attached program(s). */
  programStats(): ProgramStats[];
  /** I/Os that overlapped more than maxRangesPerIo ranges of one layer; kernel events lost for lack of ring buffer room. */
  counters(): { truncatedIos: bigint; eventsLost: bigint };
  /**
   * Delivers kernel events in batches, read by a native thread from the ring buffer.
   * One consumer per handle; stopEvents() or close() ends it.
   */
  startEvents(onEvents: (batch: KernelEvent[]) => void): void;
  stopEvents(): void;
  /** Detaches the program and unpins everything; the (empty) pin dir stays while the lock is held. */
  detach(): Promise<void>;
  /** Closes this process's handles; pins (and so the filters) stay in force. */
  close(): void;
}

/**
 * The exclusive lock on a pin dir: one writer per pin dir, for as long as the lock is
 * held (the process holds it until release() or exit). Taking a lock someone else
 * holds fails with code EBUSY, naming the pin dir and the holder's pid.
 */
export interface PinDirLock {
  readonly pinDir: string;
  release(): void;
}

/** An empty program on one of iofilter's hooks: the benchmarks' baseline. */
export interface EmptyProgram {
  readonly progId: number;
  close(): void;
}

/** A file's physical extents (FIEMAP, after flushing delayed allocation) and the device holding it. */
export interface FileExtents {
  dev: Device; // st_dev: the filesystem's device (major 0: no block device, e.g. btrfs, tmpfs)
  size: bigint;
  extents: { logical: bigint; physical: bigint; length: bigint; flags: string[] }[];
}

/** A filter as the addon returns it: ranges packed (see unpackRanges). */
type PackedFilterInfo = Omit<FilterInfo, 'ranges'> & { rangesPacked: { nums: ArrayBuffer; ops: ArrayBuffer } };
type NativeFilterer = Omit<Filterer, 'putFilter' | 'getFilter' | 'listFilters'> & {
  putFilter(spec: FilterSpec): PackedFilterInfo;
  getFilter(key: FilterKey): PackedFilterInfo | null;
  listFilters(): PackedFilterInfo[];
};

interface NativeAddon {
  limits: Limits;
  opBits: Record<Op, number>;
  probe(): Promise<Capabilities>;
  lock(pinDir: string): PinDirLock;
  attach(opts: AttachOptions): Promise<NativeFilterer>;
  /** Adopts existing pins under the lock; resolves null when there are none. */
  adopt(lock: PinDirLock): Promise<NativeFilterer | null>;
  attachEmpty(hook: string): Promise<EmptyProgram>;
  fileExtents(path: string, maxExtents: number): Promise<FileExtents>;
}

let addon: NativeAddon | undefined;
function load(): NativeAddon {
  if (!addon) {
    // Works from source (ts-jest: native/) and from the build (dist/native/).
    const file = findUp(__dirname, 'build/Release/iofilter.node');
    if (!file)
      throw Object.assign(new Error('native addon build/Release/iofilter.node not found: run `npm run build:native`'), { code: 'ENOADDON' });
    addon = require(file) as NativeAddon;
  }
  return addon;
}

export const DEFAULT_PIN_DIR = '/sys/fs/bpf/iofilter';

export function limits(): Limits {
  return load().limits;
}
export function probe(): Promise<Capabilities> {
  return load().probe();
}
/** Takes the exclusive lock on `pinDir` (created if needed; bpffs mounted if needed). Throws EBUSY if held. */
export function lock(pinDir: string = DEFAULT_PIN_DIR): PinDirLock {
  return load().lock(pinDir);
}
export async function attach(opts: AttachOptions): Promise<Filterer> {
  return new Handle(await load().attach(opts));
}
export async function adopt(lock: PinDirLock): Promise<Filterer | null> {
  const raw = await load().adopt(lock);
  return raw && new Handle(raw);
}

// The addon's handle, with ranges unpacked into objects.
class Handle implements Filterer {
  constructor(private readonly raw: NativeFilterer) {}
  get state(): AttachState {
    return this.raw.state;
  }
  putFilter(spec: FilterSpec): FilterInfo {
    return unpackRanges(this.raw.putFilter(spec));
  }
  getFilter(key: FilterKey): FilterInfo | null {
    const f = this.raw.getFilter(key);
    return f && unpackRanges(f);
  }
  listFilters(): FilterInfo[] {
    return this.raw.listFilters().map(unpackRanges);
  }
  deleteFilter(key: FilterKey): number {
    return this.raw.deleteFilter(key);
  }
  clearFilters(): number {
    return this.raw.clearFilters();
  }
  reapExpired(): number {
    return this.raw.reapExpired();
  }
  programStats(): ProgramStats[] {
    return this.raw.programStats();
  }
  counters(): { truncatedIos: bigint; eventsLost: bigint } {
    return this.raw.counters();
  }
  startEvents(onEvents: (batch: KernelEvent[]) => void): void {
    this.raw.startEvents(onEvents);
  }
  stopEvents(): void {
    this.raw.stopEvents();
  }
  detach(): Promise<void> {
    return this.raw.detach();
  }
  close(): void {
    this.raw.close();
  }
}

let opsOfBits: Op[][] | undefined;
// nums holds start, end, matched, failed per range; ops the range's operation bits.
function unpackRanges({ rangesPacked, ...f }: PackedFilterInfo): FilterInfo {
  if (!opsOfBits) {
    const bits = Object.entries(load().opBits) as [Op, number][];
    const all = bits.reduce((a, [, b]) => a | b, 0);
    opsOfBits = Array.from({ length: all + 1 }, (_, m) => bits.filter(([, b]) => m & b).map(([op]) => op));
  }
  const nums = new BigUint64Array(rangesPacked.nums);
  const ops = new Uint32Array(rangesPacked.ops);
  const ranges: RangeInfo[] = new Array(ops.length);
  for (let i = 0; i < ops.length; i++)
    ranges[i] = { start: nums[4 * i], end: nums[4 * i + 1], ops: [...opsOfBits[ops[i]]], matched: nums[4 * i + 2], failed: nums[4 * i + 3] };
  return { ...f, ranges };
}
/** Attaches an empty program on `hook` (e.g. "tp_btf/block_bio_queue"); for benchmarks. */
export function attachEmpty(hook: string): Promise<EmptyProgram> {
  return load().attachEmpty(hook);
}
/** The physical extents of a regular file, for `set --file`; runs off the event loop. E2BIG past maxExtents. */
export function fileExtents(path: string, maxExtents: number): Promise<FileExtents> {
  return load().fileExtents(path, maxExtents);
}
