// dm table building, pure: multi-segment linear tables split at range boundaries with
// offsets adjusted, every other sector mapped exactly as before, the target each op
// set maps to, and every refusal with its reason.
import { faultedTable, faultRanges, normalize, notLinear, parseTable, targetFor } from '../../agent/backends/dm/table';

// two segments on two devices, as LVM lays out an LV extended across PVs
const ORIGINAL = '0 2048 linear 7:0 100\n2048 1024 linear 7:1 0\n';

/** Sector -> (device, sector) or the target name, read back from a table. */
function mapOf(table: string, sector: bigint): string {
  for (const s of parseTable(table)) {
    if (sector < s.start || sector >= s.start + s.length) continue;
    if (s.target === 'linear') return `${s.args[0]}@${BigInt(s.args[1]) + sector - s.start}`;
    if (s.target === 'flakey') return `flakey(${s.args.slice(4).join(' ')})${s.args[0]}@${BigInt(s.args[1]) + sector - s.start}`;
    return s.target;
  }
  throw new Error(`sector ${sector} not mapped`);
}

test('parse: segments, contiguity and emptiness checked', () => {
  expect(parseTable(ORIGINAL)).toEqual([
    { start: 0n, length: 2048n, target: 'linear', args: ['7:0', '100'] },
    { start: 2048n, length: 1024n, target: 'linear', args: ['7:1', '0'] },
  ]);
  expect(() => parseTable('0 10 linear 7:0 0\n20 10 linear 7:0 10\n')).toThrow(/starts at 20, expected 10/);
  expect(() => parseTable('')).toThrow(/empty/);
  expect(() => parseTable('x y z')).toThrow(/not a table line/);
});

test('a range across the segment boundary: both segments split, offsets adjusted, every other sector maps as before', () => {
  const fr = faultRanges([{ start: 2000n, end: 2099n, ops: ['read', 'write', 'discard', 'write_zeroes'] }], '6.1.192');
  expect(Array.isArray(fr)).toBe(true);
  const t = faultedTable(parseTable(ORIGINAL), fr as never);
  expect(t).toBe('0 2000 linear 7:0 100\n2000 48 error\n2048 52 error\n2100 972 linear 7:1 52\n');
  for (let s = 0n; s < 3072n; s++) {
    const faulted = s >= 2000n && s <= 2099n;
    expect(mapOf(t, s)).toBe(faulted ? 'error' : mapOf(ORIGINAL, s));
  }
});

test('several ranges, flakey segments keep their device and offset; the edges of the device', () => {
  const fr = faultRanges(
    [
      { start: 0n, end: 9n, ops: ['write', 'flush', 'discard', 'write_zeroes'] },
      { start: 3000n, end: 3071n, ops: ['write', 'flush', 'discard', 'write_zeroes'] },
      { start: 100n, end: 100n, ops: ['read', 'write', 'discard', 'write_zeroes'] },
    ],
    '6.1.192',
  );
  const t = faultedTable(parseTable(ORIGINAL), fr as never);
  expect(t).toBe(
    [
      '0 10 flakey 7:0 100 0 1 1 error_writes',
      '10 90 linear 7:0 110',
      '100 1 error',
      '101 1947 linear 7:0 201',
      '2048 952 linear 7:1 0',
      '3000 72 flakey 7:1 952 0 1 1 error_writes',
      '',
    ].join('\n'),
  );
  for (const s of [0n, 9n, 3000n, 3071n]) expect(mapOf(t, s)).toMatch(/^flakey\(1 error_writes\)/);
  for (const s of [10n, 99n, 101n, 2047n, 2048n, 2999n]) expect(mapOf(t, s)).toBe(mapOf(ORIGINAL, s));
});

test('no range: the table is the original line for line (restore loads the original text itself)', () => {
  expect(faultedTable(parseTable(ORIGINAL), [])).toBe(ORIGINAL);
  expect(normalize('0  2048 linear 7:0 100 \n\n2048 1024 linear 7:1 0')).toBe(normalize(ORIGINAL));
});

test('overlapping ranges: merged when their ops are the same, refused when not', () => {
  const rw = ['read', 'write', 'discard', 'write_zeroes'] as const;
  expect(faultRanges([{ start: 0n, end: 10n, ops: [...rw] }, { start: 5n, end: 20n, ops: [...rw] }, { start: 21n, end: 30n, ops: [...rw] }], '6.1.0')).toEqual([
    { start: 0n, end: 30n, target: { kind: 'error' } },
  ]);
  expect(faultRanges([{ start: 0n, end: 10n, ops: [...rw] }, { start: 5n, end: 20n, ops: ['write', 'flush', 'discard', 'write_zeroes'] }], '6.1.0')).toMatch(
    /ranges\[1\] \(5-20\) overlaps a range with other ops/,
  );
});

describe('op sets: the target that fails exactly them, or why none does', () => {
  test.each([
    [['read', 'write', 'discard', 'write_zeroes'], '6.1.192', { kind: 'error' }],
    [['write_zeroes', 'discard', 'write', 'read'], '6.1.192', { kind: 'error' }],
    [['write', 'flush', 'discard', 'write_zeroes'], '6.1.192', { kind: 'flakey', features: ['error_writes'] }],
    [['read'], '6.4.0', { kind: 'flakey', features: ['error_reads'] }],
    [['read'], '7.2.13', { kind: 'flakey', features: ['error_reads'] }],
  ])('%j on %s', (ops, rel, want) => {
    expect(targetFor(ops as never, rel)).toEqual(want);
  });
  test.each([
    [['read'], '6.1.192', /ops read: dm-flakey error_reads needs Linux 6.4 or later, this kernel is 6.1.192/],
    [['read'], '5.10.223', /needs Linux 6.4 or later, this kernel is 5.10.223/],
    [['write'], '6.1.192', /ops write: no device-mapper target fails exactly these; .*write,flush,discard,write-zeroes \(dm-flakey error_writes: every flush sent to the device fails too\)/],
    [['flush'], '7.2.13', /ops flush: no device-mapper target/],
    [['discard'], '7.2.13', /ops discard: no device-mapper target/],
    [['read', 'write'], '7.2.13', /read,write,discard,write-zeroes \(an error segment: flushes pass\)/],
    [['read', 'write', 'flush', 'discard', 'write_zeroes'], '7.2.13', /no device-mapper target fails exactly these/],
  ])('%j on %s: refused', (ops, rel, why) => {
    expect(targetFor(ops as never, rel)).toMatch(why);
  });
  test('a refused range is named with its index and sectors', () => {
    expect(faultRanges([{ start: 0n, end: 9n, ops: ['read', 'write', 'discard', 'write_zeroes'] }, { start: 50n, end: 60n, ops: ['flush'] }], '6.1.0')).toMatch(/^ranges\[1\] \(50-60\) ops flush/);
  });
});

test('non-linear tables are refused naming the target and the sectors', () => {
  expect(notLinear(parseTable(ORIGINAL), 'vg-lv')).toBeNull();
  expect(notLinear(parseTable('0 2048 crypt aes-xts-plain64 :64:logon:cryptsetup:x 0 7:0 4096\n'), 'luks')).toMatch(/dm device luks maps sectors 0-2047 with target "crypt"/);
  expect(notLinear(parseTable('0 100 linear 7:0 0\n100 100 zero\n'), 'mix')).toMatch(/sectors 100-199 with target "zero"/);
  expect(notLinear(parseTable('0 100 striped 2 8 7:0 0 7:1 0\n'), 's')).toMatch(/target "striped"/);
});

test('a range beyond the device is refused by the builder', () => {
  expect(() => faultedTable(parseTable(ORIGINAL), [{ start: 3000n, end: 3072n, target: { kind: 'error' } }])).toThrow(/outside the device \(0-3071\)/);
});
