// Resolves what a request names as a device ("MAJ:MIN" or a /dev path) to the block
// device on this host, through sysfs: numbers, names, and where it sits on its disk.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { invalid, notFound } from './errors';

export interface DeviceInfo {
  major: number;
  minor: number;
  name: string; // e.g. "loop0p1"
  partition: boolean;
  disk: { major: number; minor: number; name: string };
  start: bigint; // first sector on the disk (0 for a disk)
  size: bigint; // in 512-byte sectors
}

const MAX_MAJOR = 4095; // dev_t: 12-bit major, 20-bit minor
const MAX_MINOR = (1 << 20) - 1;

/** Parses "MAJ:MIN"; throws INVALID_ARGUMENT naming the value. */
export function parseDevNumbers(s: string): { major: number; minor: number } {
  const m = /^(\d{1,10}):(\d{1,10})$/.exec(s);
  if (!m) throw invalid(`device "${s}" is neither MAJ:MIN (e.g. 259:2) nor a /dev path`);
  const major = Number(m[1]);
  const minor = Number(m[2]);
  if (major > MAX_MAJOR) throw invalid(`device "${s}": major ${major} is out of range (0..${MAX_MAJOR})`);
  if (minor > MAX_MINOR) throw invalid(`device "${s}": minor ${minor} is out of range (0..${MAX_MINOR})`);
  if (major === 0 && minor === 0) throw invalid(`device "${s}": 0:0 is not a block device`);
  return { major, minor };
}

function devOfPath(p: string): { major: number; minor: number } {
  const norm = path.resolve(p);
  if (!norm.startsWith('/dev/')) throw invalid(`device "${p}" must be MAJ:MIN or a path under /dev`);
  let st: fs.BigIntStats;
  try {
    st = fs.statSync(norm, { bigint: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw notFound(`device "${p}" does not exist`);
    throw invalid(`device "${p}" cannot be used: ${code ?? (e as Error).message}`);
  }
  if (!st.isBlockDevice()) throw invalid(`device "${p}" is not a block device`);
  // glibc's major()/minor() split of a 64-bit dev_t
  const rdev = st.rdev;
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return { major, minor };
}

const readTrim = (f: string) => fs.readFileSync(f, 'utf8').trim();

export function resolveDevice(spec: string, sysfs = '/sys'): DeviceInfo {
  if (typeof spec !== 'string' || spec.length === 0) throw invalid('device is empty: give MAJ:MIN (e.g. 259:2) or a /dev path');
  if (spec.length > 4096 || spec.includes('\0')) throw invalid('device is not a valid path or MAJ:MIN');
  const { major, minor } = spec.startsWith('/') ? devOfPath(spec) : parseDevNumbers(spec);
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
  };
}
