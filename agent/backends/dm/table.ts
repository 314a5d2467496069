// Device-mapper tables, pure: parse `dmsetup table` output, decide which target can
// fail a range's op set exactly, and build the faulted table, in which each range of
// the filter becomes a fault segment and every other sector keeps exactly its original
// mapping (linear segments split at range boundaries, their offsets adjusted).
//
// What the targets fail (drivers/md/dm-target.c, dm-flakey.c of 6.1 and 7.2):
// - `error` kills every bio mapped to it: reads, writes, discards (num_discard_bios=1);
//   it takes no flushes (num_flush_bios=0), and no write-zeroes, so a table holding it
//   has no REQ_OP_WRITE_ZEROES and the block layer zeroes with plain writes, which fail.
// - `flakey <dev> <off> 0 1 ...` is down all the time (up 0 s, down 1 s). With
//   `error_writes` it fails every bio whose direction is WRITE: writes, discards, the
//   zero-writes above, and every empty flush sent to the device (dm sends flushes to each
//   target with num_flush_bios=1, flakey included: an fsync anywhere on the device, and
//   the flush half of any REQ_PREFLUSH write, fails). Reads pass. With `error_reads`
//   (6.4+) it fails reads and passes the rest. With no feature, 6.1 fails everything but
//   7.2 fails nothing: features are always named.
// - Beyond EIO (issue 21): `delay` holds each bio by direction (reads, writes and
//   discards, flushes: three delays); flakey `drop_writes` completes every WRITE-direction
//   bio without sending it and passes reads; `corrupt_bio_byte N r|w V 0` sets byte N of
//   each read's data after it completes, or of each write's before it is sent, and
//   `random_read_corrupt`/`random_write_corrupt P` corrupt P bios per billion: all 6.5+
//   (before, reads were never changed, their iterator spent at completion, and writes
//   changed the writer's own page).
import type { Op } from '../../../native';
import type { FaultSpec } from '../../faults';

export interface Segment {
  start: bigint;
  length: bigint;
  target: string;
  args: string[];
}

/** A segment's fault target: what a faulted range maps to. */
export type FaultTarget = { kind: 'error' } | { kind: 'flakey'; features: string[] } | { kind: 'delay'; readMs: number; writeMs: number; flushMs: number };

export interface FaultRange {
  start: bigint; // in the dm device's own sectors, inclusive
  end: bigint;
  target: FaultTarget;
}

export class TableError extends Error {}

/** Parses `dmsetup table NAME` output: contiguous segments from sector 0. */
export function parseTable(text: string): Segment[] {
  const segs: Segment[] = [];
  let next = 0n;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const f = line.split(/\s+/);
    if (f.length < 3 || !/^\d+$/.test(f[0]) || !/^\d+$/.test(f[1])) throw new TableError(`not a table line: "${line}"`);
    const s: Segment = { start: BigInt(f[0]), length: BigInt(f[1]), target: f[2], args: f.slice(3) };
    if (s.start !== next) throw new TableError(`segment "${line}" starts at ${s.start}, expected ${next}`);
    if (s.length <= 0n) throw new TableError(`segment "${line}" is empty`);
    next = s.start + s.length;
    segs.push(s);
  }
  if (!segs.length) throw new TableError('the table is empty (no live table loaded)');
  return segs;
}

/** Null when every segment is `linear DEV OFFSET`; else the reason, naming the first other target. */
export function notLinear(segs: Segment[], name: string): string | null {
  for (const s of segs) {
    if (s.target !== 'linear') return `dm device ${name} maps sectors ${s.start}-${s.start + s.length - 1n} with target "${s.target}": the dm backend serves only linear tables (LVM linear LVs, iofilterctl wrap)`;
    if (s.args.length !== 2 || !/^\d+$/.test(s.args[1])) return `dm device ${name}: linear segment at ${s.start} has arguments "${s.args.join(' ')}", expected DEV OFFSET`;
  }
  return null;
}

const set = (ops: Op[]) => [...new Set(ops)].sort().join(',');
const ERROR_OPS = set(['read', 'write', 'discard', 'write_zeroes']);
const WRITE_OPS = set(['write', 'flush', 'discard', 'write_zeroes']);
const READ_OPS = set(['read']);
const SERVED =
  'the dm backend serves these op sets exactly: read,write,discard,write-zeroes (an error segment: flushes pass); ' +
  'write,flush,discard,write-zeroes (dm-flakey error_writes: every flush sent to the device fails too); ' +
  'read (dm-flakey error_reads, Linux 6.4+)';

/** The kernel version (major, minor) from a release string such as "6.1.192". */
export function kernelVersion(release: string): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

const atLeast = (release: string, maj: number, min: number) => {
  const [a, b] = kernelVersion(release);
  return a > maj || (a === maj && b >= min);
};

/** The target that does `fault` to exactly `ops`, or the reason none does on this kernel. */
export function targetFor(ops: Op[], release: string, fault?: FaultSpec): FaultTarget | string {
  if (fault && fault.kind !== 'error') return kindTarget(fault, release);
  if (fault && fault.status.tag !== 'IOERR')
    return `error status ${fault.status.errno}: device-mapper's targets fail with EIO only; other statuses need the blkinject backend (the kernel's block error injection, Linux 7.2+ with CONFIG_BLK_ERROR_INJECTION)`;
  const s = set(ops);
  if (s === ERROR_OPS) return { kind: 'error' };
  if (s === WRITE_OPS) return { kind: 'flakey', features: ['error_writes'] };
  if (s === READ_OPS) {
    const [maj, min] = kernelVersion(release);
    if (maj > 6 || (maj === 6 && min >= 4)) return { kind: 'flakey', features: ['error_reads'] };
    return `ops read: dm-flakey error_reads needs Linux 6.4 or later, this kernel is ${release} (its flakey without error_reads fails writes too)`;
  }
  return `ops ${ops.join(',')}: no device-mapper target fails exactly these; ${SERVED}`;
}

/** Delay, drop-writes and corrupt: one target for the whole filter (its ops are the kind's own). */
function kindTarget(f: Exclude<FaultSpec, { kind: 'error' }>, release: string): FaultTarget | string {
  switch (f.kind) {
    case 'delay':
      return { kind: 'delay', readMs: f.readMs, writeMs: f.writeMs, flushMs: f.flushMs };
    case 'drop-writes':
      return { kind: 'flakey', features: ['drop_writes'] };
    case 'corrupt': {
      const dir = f.direction === 'write' ? 'w' : 'r';
      if (f.perBillion) {
        if (!atLeast(release, 6, 5)) return `corrupt per_billion: dm-flakey random_${f.direction}_corrupt needs Linux 6.5 or later, this kernel is ${release}`;
        return { kind: 'flakey', features: [`random_${f.direction}_corrupt`, String(f.perBillion)] };
      }
      if (f.direction === 'write' && !atLeast(release, 6, 5))
        return `corrupt writes: before Linux 6.5 dm-flakey changes the writer's own buffer and page cache in place (this kernel is ${release}), so what is read back would not show the corruption the disk got`;
      // measured on the 6.1 test kernel: the read's data comes back unchanged
      if (f.direction === 'read' && !atLeast(release, 6, 5))
        return `corrupt reads: before Linux 6.5 dm-flakey corrupts a read at completion through the bio's own iterator, which is spent by then, so nothing is changed (this kernel is ${release})`;
      return { kind: 'flakey', features: ['corrupt_bio_byte', String(f.byte), dir, String(f.value), '0'] };
    }
    case 'throttle':
      return 'throttle: device-mapper does not throttle; the throttle backend (cgroup v2 io.max) does, for a cgroup';
  }
}

/** The ranges as fault ranges, sorted, overlapping ones of the same target merged; or the reason. */
export function faultRanges(ranges: { start: bigint; end: bigint; ops: Op[] }[], release: string, fault?: FaultSpec): FaultRange[] | string {
  const out: FaultRange[] = [];
  const sorted = ranges.map((r, i) => ({ ...r, i })).sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  for (const r of sorted) {
    const t = targetFor(r.ops, release, fault);
    if (typeof t === 'string') return `ranges[${r.i}] (${r.start}-${r.end}) ${t}`;
    const last = out[out.length - 1];
    if (last && r.start <= last.end + 1n && sameTarget(last.target, t)) {
      if (r.end > last.end) last.end = r.end;
      continue;
    }
    if (last && r.start <= last.end)
      return `ranges[${r.i}] (${r.start}-${r.end}) overlaps a range with other ops: one dm segment has one target; give overlapping ranges the same ops`;
    out.push({ start: r.start, end: r.end, target: t });
  }
  return out;
}

const sameTarget = (a: FaultTarget, b: FaultTarget) => JSON.stringify(a) === JSON.stringify(b);

function render(t: FaultTarget, dev: string, off: bigint): string {
  if (t.kind === 'error') return 'error';
  // the 9-argument form (read, write, flush apart) is in dm-delay since 1.3 (5.x): 5.10 has it
  if (t.kind === 'delay') return ['delay', ...[t.readMs, t.writeMs, t.flushMs].flatMap((ms) => [dev, String(off), String(ms)])].join(' ');
  return ['flakey', dev, String(off), '0', '1', String(t.features.length), ...t.features].join(' ');
}

/** The table with each range faulted; every other sector mapped exactly as in `segs` (all linear). */
export function faultedTable(segs: Segment[], ranges: FaultRange[]): string {
  const size = segs[segs.length - 1].start + segs[segs.length - 1].length;
  for (const r of ranges) if (r.start > r.end || r.end >= size) throw new TableError(`range ${r.start}-${r.end} is outside the device (0-${size - 1n})`);
  const lines: string[] = [];
  for (const s of segs) {
    const [dev, base] = [s.args[0], BigInt(s.args[1])];
    const end = s.start + s.length; // exclusive
    let at = s.start;
    while (at < end) {
      const inRange = ranges.find((r) => r.start <= at && at <= r.end);
      let stop: bigint;
      if (inRange) stop = inRange.end + 1n < end ? inRange.end + 1n : end;
      else {
        const nextStart = ranges.map((r) => r.start).filter((x) => x > at && x < end);
        stop = nextStart.length ? nextStart.reduce((a, b) => (a < b ? a : b)) : end;
      }
      const off = base + (at - s.start);
      lines.push(`${at} ${stop - at} ${inRange ? render(inRange.target, dev, off) : `linear ${dev} ${off}`}`);
      at = stop;
    }
  }
  return lines.join('\n') + '\n';
}

/** Whitespace-insensitive form of a table (what the kernel prints back may space it differently). */
export const normalize = (t: string) =>
  t
    .split('\n')
    .map((l) => l.trim().split(/\s+/).join(' '))
    .filter(Boolean)
    .join('\n');

