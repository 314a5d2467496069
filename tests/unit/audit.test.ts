// The audit trail's summary of a request (agent/server.ts summarize): bounded whatever
// the request, and still saying what was asked for a large one.
import { summarize } from '../../agent/server';
import { packRanges } from '../../proto/packed';

test('a 4096-range SetFilter is summarized by its first ranges and a count, not cut mid-JSON', () => {
  const req = { device: '/dev/loop0', ranges: Array.from({ length: 4096 }, (_, i) => ({ start: String(i * 16), end: String(i * 16 + 7), ops: ['OP_WRITE'] })), ttlMs: '600000' };
  const s = summarize(req) as typeof req;
  expect(s.device).toBe('/dev/loop0');
  expect(s.ttlMs).toBe('600000');
  expect(s.ranges.slice(0, 8)).toEqual(req.ranges.slice(0, 8));
  expect(s.ranges[8]).toBe('... 4088 more');
  expect(s.ranges).toHaveLength(9);
});

test('bigints become strings; short requests are kept whole', () => {
  expect(summarize({ device: '7:0', cgroupId: 12n, ranges: [{ start: 1n, end: 2n }] })).toEqual({ device: '7:0', cgroupId: '12', ranges: [{ start: '1', end: '2' }] });
});

test('a request that is long without long arrays is cut at 2048 characters, with its length', () => {
  const s = summarize({ device: 'x'.repeat(10_000) });
  expect(typeof s).toBe('string');
  expect(s).toMatch(/^\{"device":"x+\.\.\. \(10013 chars\)$/);
  expect((s as string).length).toBeLessThan(2100);
});

test('packed_ranges is summarized by its length, not spelled out byte by byte', () => {
  const req = { device: '7:0', ranges: [], packedRanges: packRanges(Array.from({ length: 4096 }, (_, i) => ({ start: i * 16, end: i * 16 + 7, ops: ['OP_WRITE' as const] }))) };
  expect(summarize(req)).toEqual({ device: '7:0', ranges: [], packedRanges: '69633 bytes' });
});
