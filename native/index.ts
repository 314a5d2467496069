// The only importer of the native addon (build/Release/iofilter.node): its typed face.
// Everything kernel-facing in the agent, tests and benchmarks goes through here.
import { findUp } from '../common/find-up';

/** Attach modes the program can run in. `observe` counts what would fail, fails nothing. */
export type Mode = 'fmod_ret' | 'kprobe' | 'observe';
export type AttachMode = Mode | 'auto';


export type Op = 'read' | 'write' | 'flush' | 'discard' | 'write_zeroes';


/** Per-disk limits compiled into the BPF program (bpf/iofilter.h). */
export interface Limits {
  maxRanges: number; // ranges per disk entry, over the disk and all its partitions
  maxFilters: number; // filters per disk entry (the disk + partitions)
}

export interface ModeCapability {
  mode: Mode;
  available: boolean;
  /** Hook the mode attaches to, e.g. "fmod_ret/should_fail_bio", "tp_btf/block_bio_queue". */
  hook: string;
  /** Why not, in words a person understands (missing config option, lockdown, no hook). */
  reason: string;
}

export interface Capabilities {
  kernelRelease: string;
  btf: boolean;
  lockdown: string; // "none", "integrity", "confidentiality" or "unknown"
  modes: ModeCapability[];
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

export interface FilterSpec {
  /** The device named by the user: a whole disk or a partition. Not 0:0. */
  device: Device;
  /** The whole disk holding it (equal to `device` for a disk). */
  disk: Device;
  /** First sector of `device` on `disk` (0n for a disk). */
  offset: bigint;
  /** Size of `device` in sectors; required when `ranges` is empty (whole device). */
  size?: bigint;
  /** Empty: the whole device, with `wholeOps` (default: all ops). */
  ranges: RangeSpec[];
  wholeOps?: Op[];
  /** Kernel-enforced expiry, from now (CLOCK_BOOTTIME). Omitted/0: never expires. */
  ttlMs?: number;
  /** In (0, 1]; omitted = 1 (every matching I/O). */
  probability?: number;
  /** Fail at most this many I/Os, then let I/O through. Omitted/0n: unlimited. */
  maxFailures?: bigint;
}

export interface RangeInfo extends RangeSpec {
  matched: bigint;
  failed: bigint; // in observe mode: I/Os that would have been failed
}

export interface FilterInfo {
  device: Device;
  disk: Device;
  offset: bigint;
  size: bigint;
  whole: boolean;
  ranges: RangeInfo[]; // in the device's coordinates, in the order given
  /** Remaining time before the kernel stops enforcing it; null = no expiry; 0 = expired. */
  remainingMs: number | null;
  probability: number; // 1 when unset
  maxFailures: bigint; // 0n = unlimited
  failures: bigint; // failures counted against maxFailures
}

export interface AttachOptions {
  mode: AttachMode;
  /** Default /sys/fs/bpf/iofilter. bpffs is mounted at /sys/fs/bpf if it is not. */
  pinDir?: string;
  /** Disk entries the map can hold (bpf_map__set_max_entries before load). Default 1024. */
  maxDisks?: number;
}

export interface AttachState {
  mode: Mode;
  pinDir: string;
  /** True when existing pins were adopted instead of attaching again. */
  adopted: boolean;
  progIds: number[];
  linkIds: number[];
  mapIds: number[];
  hook: string;
  maxDisks: number;
}

/** A handle on the attached (or adopted) program and its pinned maps. */
export interface Filterer {
  readonly state: AttachState;
  /** Replaces the device's filter atomically. Bad input throws and changes nothing. */
  putFilter(spec: FilterSpec): FilterInfo;
  getFilter(device: Device): FilterInfo | null;
  /** True if a filter existed. */
  deleteFilter(device: Device): boolean;
  listFilters(): FilterInfo[];
  /** Removes expired filters from the map (the program already ignores them). Returns how many. */
  reapExpired(): number;
  /** Detaches the program and unpins everything: nothing is left under the pin dir. */
  detach(): Promise<void>;
  /** Closes this process's handles; pins (and so the filters) stay in force. */
  close(): void;
}

/** An empty program on one of iofilter's hooks: the benchmarks' baseline. */
export interface EmptyProgram {
  readonly progId: number;
  close(): void;
}

interface NativeAddon {
  limits: Limits;
  probe(): Promise<Capabilities>;
  attach(opts: Required<Pick<AttachOptions, 'mode'>> & AttachOptions): Promise<Filterer>;
  /** Adopts existing pins; resolves null when there are none. */
  adopt(pinDir?: string): Promise<Filterer | null>;
  attachEmpty(hook: string): Promise<EmptyProgram>;
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
export function attach(opts: AttachOptions): Promise<Filterer> {
  return load().attach({ pinDir: DEFAULT_PIN_DIR, ...opts });
}
export function adopt(pinDir: string = DEFAULT_PIN_DIR): Promise<Filterer | null> {
  return load().adopt(pinDir);
}
/** Attaches an empty program on `hook` (e.g. "tp_btf/block_bio_queue"); for benchmarks. */
export function attachEmpty(hook: string): Promise<EmptyProgram> {
  return load().attachEmpty(hook);
}
