// cgroup v2 io.max lines, exactly as the kernel reads and prints them (block/blk-throttle.c
// tg_set_limit, tg_prfill_limit): "MAJ:MIN rbps=N wbps=N riops=N wiops=N", "max" for no
// limit, and no line at all for a device whose four limits are all max. Also the bounds
// the kernel takes: 0 is ERANGE, 1 is EINVAL, riops/wiops are 32-bit with UINT_MAX
// meaning max, and rbps/wbps of U64_MAX is max.
import * as fs from 'node:fs';

export const KEYS = ['rbps', 'wbps', 'riops', 'wiops'] as const;
export type Key = (typeof KEYS)[number];
/** A limit per key; null: max (no limit). */
export type Limits = Record<Key, bigint | null>;

const U64_MAX = (1n << 64n) - 1n;
const U32_MAX = (1n << 32n) - 1n;

export class IoMaxError extends Error {}

/** One line of io.max: its device and limits. Throws IoMaxError for anything else. */
export function parseLine(line: string): { devno: string; limits: Limits } {
  const m = /^(\d+:\d+) rbps=(\d+|max) wbps=(\d+|max) riops=(\d+|max) wiops=(\d+|max)$/.exec(line);
  if (!m) throw new IoMaxError(`not an io.max line: ${JSON.stringify(line)}`);
  const v = (s: string) => (s === 'max' ? null : BigInt(s));
  return { devno: m[1], limits: { rbps: v(m[2]), wbps: v(m[3]), riops: v(m[4]), wiops: v(m[5]) } };
}

/** The line the kernel prints for these limits (and takes back as they are); null when all are max (no line). */
export function renderLine(devno: string, l: Limits): string | null {
  if (KEYS.every((k) => l[k] === null)) return null;
  return `${devno} ${KEYS.map((k) => `${k}=${l[k] === null ? 'max' : String(l[k])}`).join(' ')}`;
}

/** What writing removes a device's line (every limit max). */
export function clearLine(devno: string): string {
  return `${devno} rbps=max wbps=max riops=max wiops=max`;
}

/** The device's line in an io.max file's text, or null when it has none. */
export function lineFor(text: string, devno: string): string | null {
  const lines = text.split('\n').filter((l) => l.startsWith(`${devno} `));
  if (lines.length > 1) throw new IoMaxError(`io.max has ${lines.length} lines for ${devno}`);
  if (!lines.length) return null;
  parseLine(lines[0]); // a line we could not restore exactly is an error now, not at delete
  return lines[0];
}

/** The fault's limits as io.max keys (0 in the request: no limit, i.e. max). */
export function limitsOf(f: { rbps: bigint; wbps: bigint; riops: bigint; wiops: bigint }): Limits {
  return { rbps: f.rbps || null, wbps: f.wbps || null, riops: f.riops || null, wiops: f.wiops || null };
}

/** Why the kernel would not keep these limits exactly, or null. */
export function badLimit(l: Limits): string | null {
  for (const k of KEYS) {
    const v = l[k];
    if (v === null) continue;
    if (v < 2n) return `${k}=${v}: the kernel's smallest limit is 2 (io.max refuses 1)`;
    const top = k.endsWith('iops') ? U32_MAX : U64_MAX;
    if (v >= top) return `${k}=${v}: the kernel keeps ${k.endsWith('iops') ? 'iops limits in 32 bits' : 'byte limits in 64 bits'} and reads ${top} as max; give at most ${top - 1n} (0: no limit)`;
  }
  return null;
}

/** Reads a cgroup's io.max. */
export function readIoMax(file: string): string {
  return fs.readFileSync(file, 'utf8');
}

/** One write(2) of one line, as `echo LINE > io.max` does: the kernel parses one buffer per write. */
export function writeIoMax(file: string, line: string): void {
  const buf = Buffer.from(line + '\n');
  const fd = fs.openSync(file, fs.constants.O_WRONLY);
  try {
    const n = fs.writeSync(fd, buf);
    if (n !== buf.length) throw new IoMaxError(`short write to ${file}: ${n} of ${buf.length} bytes`);
  } finally {
    fs.closeSync(fd);
  }
}
