// The match rule, run as the kernel runs it: tests/unit/match_harness.cc includes
// bpf/iofilter_match.h unchanged and lays the entry out with native/layout.cc, the
// code the agent's table uses; it is compiled for the host here.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ROOT } from '../helpers/common';

const R = 1, W = 2, FL = 4, DI = 8, WZ = 16;
const MAX = (1n << 64n) - 1n;
const DISK = '7 0';

let harness: string;
beforeAll(() => {
  harness = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'iof-match-')), 'harness');
  execFileSync('g++', ['-O2', '-Wall', '-Werror', '-Wno-unknown-pragmas', '-std=c++17', '-I', path.join(ROOT, 'bpf'), '-I', path.join(ROOT, 'native'),
    path.join(__dirname, 'match_harness.cc'), path.join(ROOT, 'native', 'layout.cc'), path.join(ROOT, 'native', 'errors.cc'), '-lbpf', '-o', harness]);
});

interface Io { sector: bigint | number; nr: number; ops: number; dev?: string }
interface Out { ret: number; draws: number; ranges: string[]; filters: string[]; flush: string[]; trunc: number; events: string[]; error?: string }

/** Runs a script; one result per IO line. */
function run(setup: string[], ios: Io[]): Out[] {
  const lines = [...setup, ...ios.map((io) => `IO ${DISK} ${io.dev ?? DISK} ${io.sector} ${io.nr} ${io.ops}`)];
  const out = execFileSync(harness, { input: lines.join('\n') + '\n', encoding: 'utf8', maxBuffer: 1 << 28 }).trim().split('\n');
  return out.map((l) => {
    if (l.startsWith('error ')) return { ret: -1, draws: 0, ranges: [], filters: [], flush: [], trunc: 0, events: [], error: l.slice(6) };
    const [head, ranges, filters, flush, trunc, events] = l.split('|').map((x) => x.trim());
    const [ret, draws] = head.split(' ').map(Number);
    const words = (x: string) => (x ? x.split(' ') : []);
    return { ret, draws, ranges: words(ranges), filters: words(filters), flush: words(flush), trunc: Number(trunc), events: words(events.replace(/,/g, ' ')) };
  });
}
const F = (dev = DISK, ...opts: string[]) => `F ${dev} ${opts.join(' ')}`.trim();
const Rg = (start: bigint | number, end: bigint | number, ops: number, f = 0) => `R ${start} ${end} ${ops} ${f}`;
const one = (setup: string[], io: Io) => run(setup, [io])[0];
const fails = (setup: string[], io: Io) => one(setup, io).ret === 2;

describe('overlap rule on range [100, 199], writes', () => {
  const setup = [F(), Rg(100, 199, W)];
  test.each([
    ['inside', 120, 8, true],
    ['exactly the range', 100, 100, true],
    ['overlapping the start', 96, 8, true],
    ['overlapping the end', 196, 8, true],
    ['spanning the whole range', 50, 200, true],
    ['one sector at start', 100, 1, true],
    ['one sector at end', 199, 1, true],
    ['adjacent before (ends at 99)', 92, 8, false],
    ['adjacent after (starts at 200)', 200, 8, false],
    ['far before', 0, 8, false],
    ['far after', 10_000, 8, false],
  ])('%s: sector %d + %d sectors -> fail=%s', (_n, sector, nr, want) => {
    expect(fails(setup, { sector, nr, ops: W })).toBe(want);
  });
});

describe('operations', () => {
  test.each([
    ['read', R], ['write', W], ['flush', FL], ['discard', DI], ['write_zeroes', WZ],
  ])('a %s range fails only %s I/O', (_n, op) => {
    const setup = [F(), Rg(0, 1000, op)];
    // a flush is an empty bio; data ops carry 8 sectors
    for (const other of [R, W, FL, DI, WZ]) expect(fails(setup, { sector: other === FL ? 0 : 10, nr: other === FL ? 0 : 8, ops: other })).toBe(other === op);
  });
  test('a write with REQ_PREFLUSH (ops write|flush) matches a flush-only range', () => {
    expect(fails([F(), Rg(0, 1000, FL)], { sector: 10, nr: 8, ops: W | FL })).toBe(true);
  });
  test('an I/O with no known op (e.g. zone append) never matches, not even counted', () => {
    const r = one([F(), Rg(0, 1000, R | W | FL | DI | WZ)], { sector: 10, nr: 8, ops: 0 });
    expect(r).toMatchObject({ ret: 0, ranges: ['0/0'], filters: ['0/0'] });
  });
});

describe('sector space edges', () => {
  test('range at sector 0', () => {
    const s = [F(), Rg(0, 7, R)];
    expect(fails(s, { sector: 0, nr: 8, ops: R })).toBe(true);
    expect(fails(s, { sector: 8, nr: 8, ops: R })).toBe(false);
  });
  test('range ending at 2^64-1 matches I/O at the very end, no overflow', () => {
    const s = [F(), Rg(MAX - 15n, MAX, W)];
    expect(fails(s, { sector: MAX - 7n, nr: 8, ops: W })).toBe(true);
    expect(fails(s, { sector: MAX - 23n, nr: 8, ops: W })).toBe(false);
    // an I/O whose last sector would wrap past 2^64-1 is clamped, not wrapped to 0
    expect(fails(s, { sector: MAX - 3n, nr: 8, ops: W })).toBe(true);
  });
  test('a wrapping I/O does not match a range at sector 0', () => {
    expect(fails([F(), Rg(0, 7, W)], { sector: MAX - 3n, nr: 8, ops: W })).toBe(false);
  });
});

describe('zero-length bios', () => {
  test('an empty flush never computes sector-1 and matches only a flush range', () => {
    expect(fails([F(), Rg(0, 0, W)], { sector: 0, nr: 0, ops: W | FL })).toBe(false);
    expect(fails([F(), Rg(100, 199, W | FL)], { sector: 0, nr: 0, ops: W | FL })).toBe(true);
  });
  test('zone management bios (zero length, no flush) never match a flush range', () => {
    // REQ_OP_ZONE_RESET, RESET_ALL, OPEN, CLOSE, FINISH carry no data and no flush: ops 0
    const r = one([F(), Rg(0, 1000, FL | W | R)], { sector: 0, nr: 0, ops: 0 });
    expect(r).toMatchObject({ ret: 0, flush: ['0/0'], filters: ['0/0'] });
    // nor a zero-length bio with a data op and no flush
    expect(fails([F(), Rg(0, 1000, FL | W)], { sector: 0, nr: 0, ops: W })).toBe(false);
  });
  test('match by device: a partition filter catches its own flushes, not another partition\'s', () => {
    const s = [F('7 1'), Rg(2048, 4095, FL)];
    expect(fails(s, { sector: 0, nr: 0, ops: FL, dev: '7 1' })).toBe(true);
    expect(fails(s, { sector: 0, nr: 0, ops: FL, dev: '7 2' })).toBe(false);
    expect(fails(s, { sector: 0, nr: 0, ops: FL, dev: DISK })).toBe(false);
  });
  test('a whole-disk flush filter catches flushes sent through any partition; counted per filter', () => {
    const r = one([F(DISK), Rg(0, 100, FL)], { sector: 0, nr: 0, ops: FL, dev: '7 2' });
    expect(r).toMatchObject({ ret: 2, flush: ['1/1'], filters: ['1/1'], ranges: ['0/0'] });
  });
});

describe('partitions: ranges are stored in whole-disk sectors', () => {
  // partition 7:1 starts at 2048; the user asked for its sectors [0, 99] -> disk [2048, 2147]
  const s = [F('7 1'), Rg(2048, 2147, W)];
  test('I/O through the partition (already normalised to absolute sectors) matches', () => {
    expect(fails(s, { sector: 2048 + 50, nr: 8, ops: W, dev: '7 1' })).toBe(true);
  });
  test('I/O through the whole disk onto the partition range matches', () => {
    expect(fails(s, { sector: 2100, nr: 8, ops: W, dev: DISK })).toBe(true);
  });
  test('I/O through the whole disk outside it does not', () => {
    expect(fails(s, { sector: 2148, nr: 8, ops: W, dev: DISK })).toBe(false);
    expect(fails(s, { sector: 50, nr: 8, ops: W, dev: DISK })).toBe(false);
  });
});

describe('one draw per filter per bio', () => {
  const half = 2 ** 31;
  // 8 adjacent 8-sector ranges of one filter at probability 0.5; one 32 KiB write spans all
  const eight = [F(DISK, `prob=${half}`), ...Array.from({ length: 8 }, (_, i) => Rg(i * 8, i * 8 + 7, W))];
  test('a bio spanning 8 ranges of one filter takes exactly one draw; a spared draw spares it', () => {
    const r = one([...eight, `RAND ${half} 0 0 0 0 0 0 0`], { sector: 0, nr: 64, ops: W });
    expect(r.draws).toBe(1); // the old rule drew per range and failed on the second draw
    expect(r.ret).toBe(1);
    expect(r.ranges).toEqual(Array(8).fill('1/0')); // matched on every range
  });
  test('a failing draw fails it once, counted failed on every range it matched', () => {
    const r = one([...eight, `RAND ${half - 1}`], { sector: 0, nr: 64, ops: W });
    expect(r).toMatchObject({ ret: 2, draws: 1, ranges: Array(8).fill('1/1'), filters: ['1/1'] });
  });
  test('two matching filters: one draw each while neither fails; none after the first that fails', () => {
    const two = [F(DISK, `prob=${half}`), F('7 1', `prob=${half}`), Rg(0, 99, W, 0), Rg(50, 149, W, 1)];
    expect(one([...two, `RAND ${half} ${half}`], { sector: 60, nr: 8, ops: W })).toMatchObject({ ret: 1, draws: 2, ranges: ['1/0', '1/0'] });
    // the first filter fails it: the second is counted as matched but never drawn
    expect(one([...two, `RAND 0 0`], { sector: 60, nr: 8, ops: W })).toMatchObject({ ret: 2, draws: 1, ranges: ['1/1', '1/0'], filters: ['1/1', '1/0'] });
    // the first spares it, the second fails it
    expect(one([...two, `RAND ${half} 0`], { sector: 60, nr: 8, ops: W })).toMatchObject({ ret: 2, draws: 2, ranges: ['1/0', '1/1'] });
  });
  test('matched is counted on ranges after the one that decides (all of them, in every layer)', () => {
    const r = one([F(), F('7 1'), Rg(0, 9, W, 0), Rg(20, 29, W, 0), Rg(5, 25, W, 1)], { sector: 0, nr: 64, ops: W });
    expect(r).toMatchObject({ ret: 2, ranges: ['1/1', '1/1', '1/0'] });
  });
});

describe('per-filter controls', () => {
  test('expiry: live before, inert (not even counted) after', () => {
    const s = [F(DISK, 'exp=1000'), Rg(0, 100, W)];
    expect(one([...s, 'NOW 999'], { sector: 0, nr: 8, ops: W })).toMatchObject({ ret: 2, ranges: ['1/1'] });
    expect(one([...s, 'NOW 1000'], { sector: 0, nr: 8, ops: W })).toMatchObject({ ret: 0, ranges: ['0/0'] });
  });
  test('max failures: exactly the first K fail, all are counted as matched', () => {
    const r = run([F(DISK, 'max=3'), Rg(0, 100, W)], Array(6).fill({ sector: 0, nr: 8, ops: W }));
    expect(r.map((x) => x.ret)).toEqual([2, 2, 2, 1, 1, 1]);
    expect(r[5].ranges).toEqual(['6/3']);
  });
  test('max failures on a kernel without fetch atomics never fails (user space refuses such filters)', () => {
    expect(one(['FETCH 0', F(DISK, 'max=3'), Rg(0, 100, W)], { sector: 0, nr: 8, ops: W }).ret).toBe(1);
  });
  test('probability: fails iff random < threshold', () => {
    const half = 2 ** 31;
    const s = [F(DISK, `prob=${half}`), Rg(0, 100, R)];
    expect(one([...s, `RAND ${half - 1}`], { sector: 0, nr: 8, ops: R }).ret).toBe(2);
    expect(one([...s, `RAND ${half}`], { sector: 0, nr: 8, ops: R })).toMatchObject({ ret: 1, ranges: ['1/0'] });
  });
});

describe('cgroup scope: the bio\'s cgroup or a descendant', () => {
  // filter on cgroup id 50 at level 1; the bio's ancestry is given root first
  const s = [F(DISK, 'cg=50:1'), Rg(0, 100, W)];
  test.each([
    ['the cgroup itself', 'CG 1 50', true],
    ['a child', 'CG 1 50 70', true],
    ['a grandchild', 'CG 1 50 70 90', true],
    ['a sibling', 'CG 1 51', false],
    ['the sibling\'s child', 'CG 1 51 50', false],
    ['the root', 'CG 1', false],
  ])('%s', (_n, cg, want) => {
    expect(fails([...s, cg], { sector: 0, nr: 8, ops: W })).toBe(want);
  });
  test('filters that differ only by cgroup: each sees its own cgroup\'s I/O', () => {
    const two = [F(DISK, 'cg=50:1'), F(DISK, 'cg=60:1'), Rg(0, 100, W, 0), Rg(0, 100, R, 1)];
    expect(one([...two, 'CG 1 50'], { sector: 0, nr: 8, ops: W })).toMatchObject({ ret: 2, ranges: ['1/1', '0/0'] });
    expect(one([...two, 'CG 1 60'], { sector: 0, nr: 8, ops: W })).toMatchObject({ ret: 0 });
    expect(one([...two, 'CG 1 60'], { sector: 0, nr: 8, ops: R })).toMatchObject({ ret: 2, ranges: ['0/0', '1/1'] });
  });
});

describe('events', () => {
  test('a failed bio reports the failing filter and its first matched range; none when the filter has no events', () => {
    const s = [F(DISK, 'ev=1000'), Rg(0, 9, W), Rg(10, 19, W)];
    expect(one(s, { sector: 12, nr: 8, ops: W }).events).toEqual(['1:1:1']);
    expect(one([F(DISK), Rg(0, 9, W)], { sector: 0, nr: 8, ops: W }).events).toEqual([]);
  });
  test('spared bios are reported only by filters that ask for it', () => {
    const half = 2 ** 31;
    expect(one([F(DISK, 'ev=10', `prob=${half}`), Rg(0, 9, W), `RAND ${half}`], { sector: 0, nr: 8, ops: W }).events).toEqual([]);
    expect(one([F(DISK, 'ev=10', `prob=${half}`, 'spared'), Rg(0, 9, W), `RAND ${half}`], { sector: 0, nr: 8, ops: W }).events).toEqual(['1:0:3']);
  });
});

describe('many ranges: layers and search trees', () => {
  /** Counters a brute-force reading of the rule predicts for one bio (one filter, every range W). */
  const expected = (ranges: [bigint, bigint][], sector: bigint, nr: bigint) => {
    const last = sector + nr - 1n;
    return ranges.map(([s, e]) => (s <= last && e >= sector ? '1/1' : '0/0'));
  };

  test('4096 disjoint ranges: every probe counts exactly the ranges it overlaps (against a brute-force oracle)', () => {
    // ranges of 1..16 sectors with gaps of 1..32, in shuffled order, starting at 0
    let rnd = 12345;
    const next = (n: number) => ((rnd = (rnd * 1103515245 + 12345) % 2 ** 31), rnd % n);
    const ranges: [bigint, bigint][] = [];
    let at = 0n;
    for (let i = 0; i < 4096; i++) {
      const len = BigInt(1 + next(16));
      ranges.push([at, at + len - 1n]);
      at += len + BigInt(1 + next(32));
    }
    const order = ranges.map((_, i) => i).sort(() => next(3) - 1);
    const setup = [F(), ...order.map((i) => Rg(ranges[i][0], ranges[i][1], W))];
    const probes: [bigint, number][] = [];
    for (let k = 0; k < 300; k++) probes.push([BigInt(next(Number(at) + 64)), 1 + next(24)]);
    probes.push([0n, 1], [ranges[4095][1], 8], [ranges[4095][1] + 1n, 8], [ranges[2048][0], 1]);
    const outs = run(setup, probes.map(([sector, nr]) => ({ sector, nr, ops: W })));
    expect(outs).toHaveLength(probes.length);
    // counters accumulate over the probes: compare cumulative sums in the order ranges were added
    const cum = order.map(() => 0);
    outs.forEach((o, p) => {
      const e = expected(order.map((i) => ranges[i]), probes[p][0], BigInt(probes[p][1]));
      e.forEach((v, i) => (cum[i] += v === '1/1' ? 1 : 0));
      expect(o.ret).toBe(e.includes('1/1') ? 2 : 0);
      expect(o.ranges).toEqual(cum.map((c) => `${c}/${c}`));
    });
  });

  test('ranges at sector 0 and at 2^64-1 among 4096', () => {
    const setup = [F(), Rg(0, 0, W), Rg(MAX, MAX, W), ...Array.from({ length: 4094 }, (_, i) => Rg(1000 + i * 10, 1000 + i * 10 + 4, W))];
    const [a, b, c] = run(setup, [{ sector: 0, nr: 1, ops: W }, { sector: MAX, nr: 1, ops: W }, { sector: MAX - 100n, nr: 8, ops: W }]);
    expect([a.ret, b.ret, c.ret]).toEqual([2, 2, 0]);
    expect(b.ranges.slice(0, 2)).toEqual(['1/1', '1/1']);
  });

  test('overlap across filters (a disk filter over partition ranges) goes to separate layers, each range counted', () => {
    // a disk-wide range plus 100 partition ranges inside it, from two filters
    const setup = [F(DISK), F('7 1'), Rg(0, 1_000_000, W, 0), ...Array.from({ length: 100 }, (_, i) => Rg(2048 + i * 100, 2048 + i * 100 + 9, W, 1))];
    const r = one(setup, { sector: 2048 + 5 * 100 + 5, nr: 8, ops: W });
    expect(r.ret).toBe(2);
    expect(r.ranges[0]).toBe('1/1');
    expect(r.ranges.slice(1).map((c, i) => (c !== '0/0' ? i : -1)).filter((i) => i >= 0)).toEqual([5]);
    expect(r.ranges[6]).toBe('1/0'); // matched; the disk filter (first) failed it
  });

  test('more than 8 ranges covering one sector are refused by the layout', () => {
    const nine = [F(), ...Array.from({ length: 9 }, (_, i) => Rg(i, 100, W))];
    expect(one(nine, { sector: 0, nr: 1, ops: W }).error).toMatch(/more than 8 ranges would cover sector 8/);
    expect(one(nine.slice(0, 9), { sector: 50, nr: 1, ops: W }).ret).toBe(2); // 8 are fine
  });

  test('a bio overlapping more than 64 ranges of a layer is judged on the first 64 and counted as truncated', () => {
    const setup = [F(), ...Array.from({ length: 100 }, (_, i) => Rg(i * 2, i * 2, W))];
    const r = one(setup, { sector: 0, nr: 200, ops: W });
    expect(r.ret).toBe(2);
    expect(r.trunc).toBe(1);
    expect(r.ranges.filter((c) => c === '1/1')).toHaveLength(64);
    expect(r.ranges.slice(64)).toEqual(Array(36).fill('0/0'));
    expect(one(setup, { sector: 0, nr: 128, ops: W }).trunc).toBe(0); // exactly 64: not truncated
  });
});
