// Resolves what a request names as a device ("MAJ:MIN" or a /dev path) to the block
// device on this host, through sysfs: numbers, names, and where it sits on its disk.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseDevNumbers as parseNumbers, parseDeviceSpec } from '../proto/devices';
import { invalid, notFound } from './errors';

export interface DeviceInfo {
  major: number;
  minor: number;
  name: string; // e.g. "loop0p1"
  partition: boolean;
  disk: { major: number; minor: number; name: string };
  start: bigint; // first sector on the disk (0 for a disk)
  size: bigint; // in 512-byte sectors
  /** The disk's current medium (`diskseq`, Linux 5.15+); 0n where the kernel has none. */
  diskseq: bigint;
}

/** Parses "MAJ:MIN" by the contract's rule (proto/devices.ts); INVALID_ARGUMENT naming the value. */
export const parseDevNumbers = (s: string) => parseNumbers(s, invalid);

/** The device number of a block special file (the path is already known to be under /dev). */
function devOfPath(p: string, shown: string): { major: number; minor: number } {
  let st: fs.BigIntStats;
  try {
    st = fs.statSync(p, { bigint: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw notFound(`device "${shown}" does not exist`);
    throw invalid(`device "${shown}" cannot be used: ${code ?? (e as Error).message}`);
  }
  if (!st.isBlockDevice()) throw invalid(`device "${shown}" is not a block device`);
  return splitDev(st.rdev);
}

/** glibc's major()/minor() split of a 64-bit dev_t (st_rdev, st_dev). */
export function splitDev(dev: bigint): { major: number; minor: number } {
  return { major: Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn)), minor: Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn)) };
}

const readTrim = (f: string) => fs.readFileSync(f, 'utf8').trim();

/**
 * A disk's medium sequence number (5.15+): a new number for every new medium behind a
 * device number (loop attach, a replaced NVMe namespace). 0n where the kernel has no
 * `diskseq` attribute; null when the disk itself is gone.
 */
export function diskSeqOf(disk: { major: number; minor: number }, sysfs = '/sys'): bigint | null {
  const dir = path.join(sysfs, 'dev', 'block', `${disk.major}:${disk.minor}`);
  try {
    return BigInt(readTrim(path.join(dir, 'diskseq')));
  } catch {
    return fs.existsSync(dir) ? 0n : null;
  }
}

export function resolveDevice(spec: string, sysfs = '/sys'): DeviceInfo {
  const parsed = parseDeviceSpec(spec, invalid);
  const { major, minor } = 'path' in parsed ? devOfPath(parsed.path, spec) : parsed;
  const link = path.join(sysfs, 'dev', 'block', `${major}:${minor}`);
  let dir: string;
  try {
    dir = fs.realpathSync(link);
  } catch {
    throw notFound(`no block device ${major}:${minor} on this host (${link} does not exist)`);
  }
  const partition = fs.existsSync(path.join(dir, 'partition'));
  const diskDir = partition ? path.dirname(dir) : dir;
  const [dmaj, dmin] = readTrim(path.join(diskDir, 'dev')).split(':').map(Number);
  return {
    major,
    minor,
    name: path.basename(dir),
    partition,
    disk: { major: dmaj, minor: dmin, name: path.basename(diskDir) },
    start: partition ? BigInt(readTrim(path.join(dir, 'start'))) : 0n,
    size: BigInt(readTrim(path.join(dir, 'size'))),
    diskseq: diskSeqOf({ major: dmaj, minor: dmin }, sysfs) ?? 0n,
  };
}
