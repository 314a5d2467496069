// The kernel's block error injection rules, pure: a filter as rules, the text the
// debugfs file takes and shows, and the writes that turn one rule list into another.
//
// What the kernel does (block/error-injection.c, block/blk-core.c of 7.2): each disk
// (gendisk) has one list of rules, newest first; submit_bio_noacct_nocheck(), after a
// partition's bio is remapped to disk sectors, walks it for every bio and the first rule
// whose op equals the bio's op, whose [start, end] overlaps the bio's sectors and whose
// draw (get_random_u32() % chance == 0; chance 1: always) succeeds ends the bio with its
// status. A rule whose draw fails lets the walk go on. Zero-sized bios (pure flushes)
// never match, and a REQ_OP_FLUSH rule never fires at the bio level. So:
// - ranges are in the filter's device coordinates plus the partition's start sector;
// - one rule per op per merged range: READ, WRITE, DISCARD, WRITE_ZEROES; flush is refused;
// - probability p is exact only as chance N = 1/p; and, since every rule a bio reaches
//   draws again while the bpf backend draws once per filter, a filter with p < 1 may
//   have one rule per op (a bio spanning two ranges would be drawn twice);
// - the disk's filters are listed newest first (the kernel's own order: a new filter's
//   rules are added in front, without touching the others').
import type { Op } from '../../../native';

export interface Rule {
  op: KernelOp;
  status: string; // BLK_STS_<tag>
  start: bigint; // disk sectors, inclusive
  end: bigint;
  chance: number;
}

export type KernelOp = 'READ' | 'WRITE' | 'DISCARD' | 'WRITE_ZEROES';

/** iofilter's ops the kernel can fail, in the order a filter's rules are listed. */
export const KERNEL_OPS: readonly [Op, KernelOp][] = [
  ['read', 'READ'],
  ['write', 'WRITE'],
  ['discard', 'DISCARD'],
  ['write_zeroes', 'WRITE_ZEROES'],
];

const U32_MAX = 0xffff_ffff;

const fmt = (x: number) => Number(x.toPrecision(4)).toString();

/** The kernel's chance for probability `p` (undefined or 1: 1), or the reason p is not 1/N. */
export function chanceOf(p: number | undefined): number | string {
  if (p === undefined || p >= 1) return 1;
  const n = Math.round(1 / p);
  if (n >= 1 && n <= U32_MAX && Math.abs(n * p - 1) <= 1e-9) return n;
  if (1 / p > U32_MAX) return `probability ${p}: block error injection fails 1 in N I/Os with N at most ${U32_MAX}`;
  const [lo, hi] = [Math.floor(1 / p), Math.ceil(1 / p)];
  return `probability ${p}: block error injection fails exactly 1 in N I/Os (chance=N) and ${p} is not 1/N; the nearest are 1/${lo} (${fmt(1 / lo)}) and 1/${hi} (${fmt(1 / hi)})`;
}

export interface RangeLike {
  start: bigint;
  end: bigint;
  ops: Op[];
}

/**
 * A filter's rules: its ranges (device coordinates; none: [0, size - 1] with
 * `wholeOps`) shifted by `offset`, one rule per op per merged range; or the reason the
 * kernel cannot do exactly that.
 */
export function filterRules(ranges: RangeLike[], offset: bigint, status: string, chance: number): Rule[] | string {
  for (const [i, r] of ranges.entries())
    if (r.ops.includes('flush'))
      return (
        `ranges[${i}] (${r.start}-${r.end}) ops ${r.ops.join(',')}: block error injection cannot fail flushes ` +
        '(it never matches the empty bios of a pure flush, and a flush rule never fires at the bio level); ' +
        'leave flush out (a write that carries REQ_PREFLUSH is still a write and fails), or use the bpf backend'
      );
  const rules: Rule[] = [];
  for (const [op, kop] of KERNEL_OPS) {
    const spans = ranges
      .filter((r) => r.ops.includes(op))
      .map((r) => ({ start: r.start, end: r.end }))
      .sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    const merged: { start: bigint; end: bigint }[] = [];
    for (const s of spans) {
      const last = merged[merged.length - 1];
      if (last && s.start <= last.end + 1n) {
        if (s.end > last.end) last.end = s.end;
      } else merged.push({ ...s });
    }
    if (chance > 1 && merged.length > 1)
      return (
        `probability 1/${chance} with ${merged.length} separate ${op} ranges: the kernel draws once per rule a bio reaches, ` +
        'so a bio spanning two ranges would be drawn twice (iofilter draws once per filter); give one range per op, or probability 1'
      );
    for (const m of merged) rules.push({ op: kop, status, start: m.start + offset, end: m.end + offset, chance });
  }
  if (!rules.length) return 'no operation selected';
  return rules;
}

/** The write that adds `r` (start and nr_sectors in decimal: the kernel parses with base 0, so no leading zeros). */
export function addCommand(r: Rule): string {
  return `add,op=${r.op},status=${r.status},start=${r.start},nr_sectors=${r.end - r.start + 1n},chance=${r.chance}`;
}

/** `r` as the kernel lists it when the file is read. */
export function shown(r: Rule): string {
  return `${r.start}:${r.end} op=${r.op},status=${r.status},chance=${r.chance}`;
}

const SHOWN = /^(\d+):(\d+) op=([A-Z_]+),status=([A-Z_]+),chance=(\d+)$/;

/** A listed line back into a rule (null: not one the kernel prints, or an op iofilter never sets). */
export function parseShown(line: string): Rule | null {
  const m = SHOWN.exec(line.trim());
  if (!m || !KERNEL_OPS.some(([, k]) => k === m[3])) return null;
  return { start: BigInt(m[1]), end: BigInt(m[2]), op: m[3] as KernelOp, status: m[4], chance: Number(m[5]) };
}

/** The file's content as lines (empty: no rules). */
export function listed(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}

/**
 * The writes that turn the list `from` into `to` (both as listed, newest first). When
 * `from` is the tail of `to`, only the new rules are added, oldest of them first, so
 * the rules already in force are never absent; otherwise `removeall`, then all of `to`
 * from its last line to its first (the kernel has no per-rule delete).
 */
export function transition(from: string[], to: string[]): string[] {
  const same = (a: string[], b: string[]) => a.length === b.length && a.every((x, i) => x === b[i]);
  if (same(from, to)) return [];
  const k = to.length - from.length;
  const tail = k >= 0 && same(to.slice(k), from);
  const adds = (lines: string[]) =>
    [...lines].reverse().map((l) => {
      const r = parseShown(l);
      if (!r) throw new Error(`not a rule iofilter writes: "${l}"`);
      return addCommand(r);
    });
  return tail ? adds(to.slice(0, k)) : ['removeall', ...adds(to)];
}
