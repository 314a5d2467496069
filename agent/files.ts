// `set --file`: a file on the agent's host becomes an ordinary filter on the block
// device holding it, with one sector range per physical extent (FIEMAP, merged where
// adjacent). Files whose data has no fixed place on one block device are refused,
// saying why. extentsToRanges() is the pure conversion; resolveFile() does the I/O.
import { faultKind } from '../proto/faults';
import * as fs from 'node:fs';
import type * as native from '../native';
import type { SetFilterRequest__Output } from '../proto/gen/iofilter/v1/SetFilterRequest';
import { DeviceInfo, resolveDevice, splitDev } from './devices';
import { exhausted, fromNative, invalid, notFound, precondition, RpcError } from './errors';
import { mountOf, mounts } from './protect';
import { parseOps } from './validate';

export type FileExtentsFn = (path: string, maxExtents: number) => Promise<native.FileExtents>;

// Extents read from one file, at most: 32 MiB of them in memory. A file contiguous on
// disk still has one extent per 128 MiB on ext4, so this is a 128 TiB file; anything
// with more extents is fragmented far past the ranges a filter can hold anyway.
export const MAX_FILE_EXTENTS = 1 << 20;

/** 512-byte sectors, inclusive, in the device's own coordinates. */
export interface SectorRange {
  start: bigint;
  end: bigint;
}

// Extent flags (native names of FIEMAP_EXTENT_*) that leave no sectors of the file's
// own to filter, with what they mean, most telling first: the kernel sets not_aligned
// with inline and tail, and unknown with delalloc. Flags not named here or in FINE are
// refused too.
const REFUSED: Record<string, string> = {
  inline:
    "holds inline data: the file's bytes are stored inside a metadata block (the inode or an extent block), " +
    "together with other files' metadata, so the file has no sectors of its own",
  tail: "is a packed tail: it shares its block with other files' data",
  delalloc:
    'is delayed allocation: its data is not on disk even after the sync the agent asked for, so it has no sectors yet; ' +
    'let the file be written out (sync it) and set the filter again',
  unknown: 'has no known location (FIEMAP_EXTENT_UNKNOWN): the filesystem cannot say where its data is',
  unwritten:
    'is unwritten: space preallocated (e.g. by fallocate) and never written - reads of it are answered with zeros ' +
    'without reading the disk and the first write converts it, so a filter on its sectors would not see those reads; ' +
    'write the data (and sync) before setting the filter',
  encoded: "is encoded (e.g. compressed): its sectors do not hold the file's bytes one for one",
  not_aligned: 'is not block-aligned: its data is packed into sectors that may hold other data too',
};
// shared (reflinks, snapshots): the sectors are the file's, if not only its; encrypted:
// the location is real, only the bytes are ciphertext; last, merged: informational.
const FINE = new Set(['last', 'merged', 'shared', 'encrypted']);

/** The flag that makes an extent unusable, or undefined. Encrypted extents also carry encoded (fiemap.rst): that one is fine. */
function refusedFlag(flags: string[]): string | undefined {
  const usable = (f: string) => FINE.has(f) || (f === 'encoded' && flags.includes('encrypted'));
  return Object.keys(REFUSED).find((f) => flags.includes(f) && !usable(f)) ?? flags.find((f) => !usable(f));
}

/**
 * The merged sector ranges of a file's extents. Throws FAILED_PRECONDITION naming the
 * first extent that cannot be filtered, or a file with nothing on disk, and
 * RESOURCE_EXHAUSTED when more than `maxRanges` ranges remain after merging.
 */
export function extentsToRanges(file: string, extents: native.FileExtents['extents'], maxRanges: number): SectorRange[] {
  const ranges: SectorRange[] = [];
  extents.forEach((x, i) => {
    const at = `extent ${i} of "${file}" (file offset ${x.logical}, ${x.length} bytes)`;
    const bad = refusedFlag(x.flags);
    if (bad) {
      const like = extents.filter((y) => refusedFlag(y.flags) === bad).length;
      const why = REFUSED[bad] ?? `has the extent flag "${bad}", which iofilter does not know`;
      throw precondition(`${at} ${why}${like > 1 ? ` (${like} of its ${extents.length} extents are like this)` : ''}`);
    }
    if (x.physical % 512n || x.length % 512n)
      throw precondition(`${at} is at physical byte ${x.physical}: it does not start and end on 512-byte sector boundaries`);
    if (x.length > 0n) ranges.push({ start: x.physical / 512n, end: (x.physical + x.length) / 512n - 1n });
  });
  if (!ranges.length) throw precondition(`"${file}" has nothing on disk to filter: it has no extents (it is empty or entirely sparse)`);
  const merged = mergeRanges(ranges);
  if (merged.length > maxRanges)
    throw exhausted(
      `"${file}" has ${extents.length} extents on disk, ${merged.length} sector ranges after merging adjacent ones; ` +
        `a filter holds at most ${maxRanges} ranges (defragment the file, or filter a smaller one)`,
    );
  return merged;
}

/** Sorted, with overlapping and adjacent ranges joined. */
export function mergeRanges(ranges: SectorRange[]): SectorRange[] {
  const sorted = [...ranges].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const out: SectorRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.start <= last.end + 1n) {
      if (r.end > last.end) last.end = r.end;
    } else out.push({ ...r });
  }
  return out;
}

/**
 * The file a SetFilter request names, or null for a device request. INVALID_ARGUMENT
 * for both or neither, a file with ranges (its extents are the ranges), no ops, or a
 * path that is not absolute.
 */
export function requestedFile(req: SetFilterRequest__Output): string | null {
  const file = req.file ?? '';
  if (!file && !req.device) throw invalid('device is empty: give MAJ:MIN (e.g. 259:2) or a /dev path, or a file');
  if (!file) return null;
  if (req.device) throw invalid(`device "${req.device}" and file "${file}": give exactly one of device and file`);
  if (req.ranges?.length || req.packedRanges?.length)
    throw invalid(`${req.ranges?.length ? 'ranges' : 'packed_ranges'}: a filter made from file "${file}" covers the file's extents; give its operations in whole_device_ops, without ranges`);
  // delay, drop-writes, corrupt and throttle bring their own ops (validate.ts checks any given)
  if (faultKind(req.fault) === 'error') parseOps(req.wholeDeviceOps ?? [], 'whole_device_ops');
  if (file.length > 4096 || file.includes('\0')) throw invalid('file is not a valid path');
  if (!file.startsWith('/')) throw invalid(`file "${file}" must be an absolute path on the agent's host`);
  return file;
}

/** The request as an ordinary ranged request: each of the file's ranges with whole_device_ops. */
export function asRangedRequest(req: SetFilterRequest__Output, ranges: SectorRange[]): SetFilterRequest__Output {
  return { ...req, file: '', ranges: ranges.map((r) => ({ start: String(r.start), end: String(r.end), ops: req.wholeDeviceOps })), wholeDeviceOps: [] };
}

// Why a filesystem with an anonymous device (major 0) cannot be filtered by sectors.
const NO_DEVICE: [RegExp, string][] = [
  [
    /^btrfs$/,
    "btrfs gives its files an anonymous device number, and the extents it reports are addresses in its own space, which can span several devices and RAID profiles: they are not sectors of one block device",
  ],
  [/^(tmpfs|ramfs|hugetlbfs)$/, 'the file lives in memory: no block I/O reads or writes it'],
  [/^overlay$/, "an overlayfs file's data is in a file of its upper or lower filesystem: name that file instead"],
  [/^(nfs4?|cifs|smb3|9p|ceph|glusterfs|virtiofs|afs|fuse(\..*)?|fuseblk)$/, 'its data is on another host or served by a process, not on a block device of this host'],
  [/^zfs$/, 'ZFS places data across the devices of its pool, not at sectors of one block device'],
];

function fsText(dev: { major: number; minor: number }, file: string, mountinfo?: string): { type: string; text: string } {
  let all: ReturnType<typeof mounts>;
  try {
    all = mounts(mountinfo);
  } catch {
    return { type: '?', text: 'a filesystem' };
  }
  const m = all.find((x) => x.dev === `${dev.major}:${dev.minor}`) ?? mountOf(file, all);
  return m ? { type: m.fsType, text: `${m.fsType} (${m.source} at ${m.mountPoint})` } : { type: '?', text: 'a filesystem' };
}

/** FAILED_PRECONDITION for a file (`real`: its resolved path) on a filesystem with an anonymous device. */
function refuseAnonymous(dev: { major: number; minor: number }, file: string, real: string, mountinfo?: string): void {
  if (dev.major !== 0) return;
  const fsx = fsText(dev, real, mountinfo);
  const why = NO_DEVICE.find(([re]) => re.test(fsx.type))?.[1] ?? 'its filesystem is on no block device of this host';
  throw precondition(`file "${file}" is on ${fsx.text}, which has no block device (device number ${dev.major}:${dev.minor}): ${why}; --file works on ext4 and xfs, also on dm/LVM and md devices`);
}

/** stat() and realpath() failures as gRPC errors naming the file. */
function pathError(e: unknown, file: string): RpcError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return notFound(`file "${file}" does not exist on this host`);
  if (code === 'ENOTDIR') return notFound(`file "${file}": a component of the path is not a directory`);
  if (code === 'ELOOP') return invalid(`file "${file}": too many levels of symbolic links`);
  if (code === 'EACCES' || code === 'EPERM') return precondition(`file "${file}": the agent may not read it (${code})`);
  return fromNative(e, `file "${file}"`);
}

function kindOf(st: fs.BigIntStats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isBlockDevice()) return 'a block device (give it as the device instead)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

export interface FileHost {
  fileExtents: FileExtentsFn;
  /** Ranges a filter may hold (native limits().maxRangesPerFilter). */
  maxRanges: number;
  sysfs?: string;
  mountinfo?: string;
}

/** The block device holding `file` on this host and the merged sectors of its extents. */
export async function resolveFile(file: string, host: FileHost): Promise<{ dev: DeviceInfo; ranges: SectorRange[] }> {
  let real: string;
  let st: fs.BigIntStats;
  try {
    real = await fs.promises.realpath(file);
    // stat before open: opening a FIFO or a tape device would block or act on it
    st = await fs.promises.stat(real, { bigint: true });
  } catch (e) {
    throw pathError(e, file);
  }
  if (!st.isFile()) throw invalid(`file "${file}" is ${kindOf(st)}, not a regular file`);
  let fx: native.FileExtents;
  try {
    fx = await host.fileExtents(real, MAX_FILE_EXTENTS);
  } catch (e) {
    if ((e as { code?: string }).code !== 'ENOTSUP') throw pathError(e, file);
    // tmpfs and the like have no FIEMAP: say what they are rather than what they lack
    const dev = splitDev(st.dev);
    refuseAnonymous(dev, file, real, host.mountinfo);
    throw precondition(`file "${file}" is on ${fsText(dev, real, host.mountinfo).text}, which does not report file extents (FIEMAP)`);
  }
  refuseAnonymous(fx.dev, file, real, host.mountinfo);
  const dev = resolveDevice(`${fx.dev.major}:${fx.dev.minor}`, host.sysfs);
  return { dev, ranges: extentsToRanges(file, fx.extents, host.maxRanges) };
}
