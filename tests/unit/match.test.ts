// The match rule, run as the kernel runs it: tests/unit/match_harness.c includes
// bpf/iofilter_match.h unchanged and is compiled for the host here.
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
  execFileSync('gcc', ['-O2', '-Wall', '-Werror', '-I', path.join(ROOT, 'bpf'), path.join(__dirname, 'match_harness.c'), '-o', harness]);
});

interface Io { sector: bigint | number; nr: number; ops: number; dev?: string }
/** Runs a script; returns [fail, counters "m/f" per range in insertion order] per IO line. */
function run(setup: string[], ios: Io[]): { fail: boolean; counters: string[] }[] {
  const lines = [...setup, ...ios.map((io) => `IO ${DISK} ${io.dev ?? DISK} ${io.sector} ${io.nr} ${io.ops}`)];
  const out = execFileSync(harness, { input: lines.join('\n') + '\n', encoding: 'utf8' }).trim().split('\n');
  return out.map((l) => {
    const [f, c] = l.split('|');
    return { fail: f.trim() === '1', counters: c.trim() ? c.trim().split(' ') : [] };
  });
}
const filter = (dev = DISK, expires = 0n, maxFailures = 0n, prob = 0) => `F ${dev} ${expires} ${maxFailures} ${prob}`;
const range = (start: bigint | number, end: bigint | number, ops: number, f = 0) => `R ${start} ${end} ${ops} ${f}`;
const fails = (setup: string[], io: Io) => run(setup, [io])[0].fail;

describe('overlap rule on range [100, 199], writes', () => {
  const setup = [filter(), range(100, 199, W)];
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
    const setup = [filter(), range(0, 1000, op)];
    for (const other of [R, W, DI, WZ]) {
      expect(fails(setup, { sector: 10, nr: 8, ops: other })).toBe(other === op);
    }
  });
  test('a write with REQ_PREFLUSH (ops write|flush) matches a flush-only range', () => {
    expect(fails([filter(), range(0, 1000, FL)], { sector: 10, nr: 8, ops: W | FL })).toBe(true);
  });
  test('an I/O with no known op (e.g. a zone op) never matches', () => {
    expect(fails([filter(), range(0, 1000, R | W | FL | DI | WZ)], { sector: 10, nr: 8, ops: 0 })).toBe(false);
  });
});

describe('sector space edges', () => {
  test('range at sector 0', () => {
    const s = [filter(), range(0, 7, R)];
    expect(fails(s, { sector: 0, nr: 8, ops: R })).toBe(true);
    expect(fails(s, { sector: 8, nr: 8, ops: R })).toBe(false);
  });
  test('range ending at 2^64-1 matches I/O at the very end, no overflow', () => {
    const s = [filter(), range(MAX - 15n, MAX, W)];
    expect(fails(s, { sector: MAX - 7n, nr: 8, ops: W })).toBe(true);
    expect(fails(s, { sector: MAX - 23n, nr: 8, ops: W })).toBe(false);
    // an I/O whose last sector would wrap past 2^64-1 is clamped, not wrapped to 0
    expect(fails(s, { sector: MAX - 3n, nr: 8, ops: W })).toBe(true);
  });
  test('a wrapping I/O does not match a range at sector 0', () => {
    expect(fails([filter(), range(0, 7, W)], { sector: MAX - 3n, nr: 8, ops: W })).toBe(false);
  });
});

describe('zero-length bios (empty flush)', () => {
  test('never compute sector-1 and match only a flush range', () => {
    expect(fails([filter(), range(0, 0, W)], { sector: 0, nr: 0, ops: W | FL })).toBe(false);
    expect(fails([filter(), range(100, 199, W | FL)], { sector: 0, nr: 0, ops: W | FL })).toBe(true);
  });
  test('match by device: a partition filter catches its own flushes, not another partition\'s', () => {
    const s = [filter('7 1'), range(2048, 4095, FL)];
    expect(fails(s, { sector: 0, nr: 0, ops: FL, dev: '7 1' })).toBe(true);
    expect(fails(s, { sector: 0, nr: 0, ops: FL, dev: '7 2' })).toBe(false);
    expect(fails(s, { sector: 0, nr: 0, ops: FL, dev: DISK })).toBe(false);
  });
  test('a whole-disk flush filter catches flushes sent through any partition', () => {
    expect(fails([filter(DISK), range(0, 100, FL)], { sector: 0, nr: 0, ops: FL, dev: '7 2' })).toBe(true);
  });
});

describe('partitions: ranges are stored in whole-disk sectors', () => {
  // partition 7:1 starts at 2048; the user asked for its sectors [0, 99] -> disk [2048, 2147]
  const s = [filter('7 1'), range(2048, 2147, W)];
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

describe('per-filter controls', () => {
  test('expiry: live before, inert (not even counted) after', () => {
    const s = [filter(DISK, 1000n), range(0, 100, W)];
    const [before] = run([...s, 'NOW 999'], [{ sector: 0, nr: 8, ops: W }]);
    expect(before).toEqual({ fail: true, counters: ['1/1'] });
    const [after] = run([...s, 'NOW 1000'], [{ sector: 0, nr: 8, ops: W }]);
    expect(after).toEqual({ fail: false, counters: ['0/0'] });
  });
  test('max failures: exactly the first K fail, all are counted as matched', () => {
    const r = run([filter(DISK, 0n, 3n), range(0, 100, W)], Array(6).fill({ sector: 0, nr: 8, ops: W }));
    expect(r.map((x) => x.fail)).toEqual([true, true, true, false, false, false]);
    expect(r[5].counters).toEqual(['6/3']);
  });
  test('probability: fails iff random < threshold', () => {
    const half = 2 ** 31;
    const s = [filter(DISK, 0n, 0n, half), range(0, 100, R)];
    expect(run([...s, `RAND ${half - 1}`], [{ sector: 0, nr: 8, ops: R }])[0].fail).toBe(true);
    const [miss] = run([...s, `RAND ${half}`], [{ sector: 0, nr: 8, ops: R }]);
    expect(miss).toEqual({ fail: false, counters: ['1/0'] });
  });
  test('a range that matched but passed (probability) does not hide a later failing range', () => {
    const s = [filter(DISK, 0n, 0n, 1), filter('7 1'), range(0, 100, R, 0), range(50, 150, R, 1), 'RAND 5'];
    const [r] = run(s, [{ sector: 60, nr: 8, ops: R }]);
    expect(r).toEqual({ fail: true, counters: ['1/0', '1/1'] });
  });
});

describe('many ranges', () => {
  test('64 ranges sorted by start: only the overlapped one counts', () => {
    const s = [filter()];
    for (let i = 63; i >= 0; i--) s.push(range(i * 1000, i * 1000 + 9, W)); // added in reverse
    const [r] = run(s, [{ sector: 42_005, nr: 8, ops: W }]);
    expect(r.fail).toBe(true);
    const hit = r.counters.map((c, i) => (c === '1/1' ? i : -1)).filter((i) => i >= 0);
    expect(hit).toEqual([63 - 42]);
  });
  test('an I/O spanning several ranges counts the first failing one', () => {
    const [r] = run([filter(), range(0, 9, W), range(20, 29, W)], [{ sector: 0, nr: 64, ops: W }]);
    expect(r).toEqual({ fail: true, counters: ['1/1', '0/0'] });
  });
});
