// packed_ranges (issue 25): the exact byte layout, every malformed form refused with a
// message naming what is wrong, and, over real gRPC against an in-process agent (fake
// kernel, fake sysfs), the same checks as `repeated Range` with nothing changed on a
// refusal. Also the FilterView: SetFilter BASIC unless asked, Status FULL unless asked.
import { status } from '@grpc/grpc-js';
import pino from 'pino';
import { resolveConfig } from '../../agent/config';
import { Agent, createAgent } from '../../agent/server';
import { compactRanges, IoFilterClient, PACK_FROM } from '../../client';
import type { SetFilterRequest } from '../../proto/gen/iofilter/v1/SetFilterRequest';
import { packRanges, PackedRangesError, unpackRanges } from '../../proto/packed';
import { fakeKernel, fakeSysfs } from '../helpers/fake-kernel';

const U64_MAX = (1n << 64n) - 1n;
const W = ['OP_WRITE'] as const;

describe('the layout', () => {
  test('version byte 1, then per range start u64 LE, end u64 LE, ops bitmask (bit k = Op value k+1)', () => {
    const b = packRanges([
      { start: 1, end: '18446744073709551615', ops: ['OP_WRITE', 'OP_FLUSH'] },
      { start: '256', end: 511, ops: ['OP_READ', 'OP_DISCARD', 'OP_WRITE_ZEROES'] },
    ]);
    expect(b.toString('hex')).toBe(
      '01' + '0100000000000000' + 'ffffffffffffffff' + '06' + '0001000000000000' + 'ff01000000000000' + '19',
    );
  });

  test('every one of the 31 op sets and the extreme sectors round-trip', () => {
    const all = ['OP_READ', 'OP_WRITE', 'OP_FLUSH', 'OP_DISCARD', 'OP_WRITE_ZEROES'] as const;
    const ranges = Array.from({ length: 31 }, (_, i) => ({
      start: i === 0 ? '0' : String(U64_MAX - BigInt(i)),
      end: String(U64_MAX - BigInt(i) + (i === 0 ? 0n : 1n)),
      ops: all.filter((_o, k) => (i + 1) & (1 << k)),
    }));
    const got = unpackRanges(packRanges(ranges), 64);
    expect(got.map((r) => [String(r.start), String(r.end), r.ops])).toEqual(
      ranges.map((r) => [r.start, r.end, r.ops.map((o) => o.slice(3).toLowerCase())]),
    );
  });

  test.each<[string, Buffer, RegExp]>([
    ['empty', Buffer.alloc(0), /^packed_ranges: empty/],
    ['version 0', Buffer.concat([Buffer.from([0]), Buffer.alloc(17, 1)]), /^packed_ranges: version 0 is not supported \(this agent reads version 1\)$/],
    ['version 2', Buffer.concat([Buffer.from([2]), Buffer.alloc(17, 1)]), /^packed_ranges: version 2 is not supported/],
    ['the version byte alone', Buffer.from([1]), /^packed_ranges: version byte and no range/],
    ['16 bytes of a record', Buffer.concat([Buffer.from([1]), Buffer.alloc(16, 1)]), /^packed_ranges: 17 bytes is not 1 \+ a multiple of 17 \(a partial record of 16 bytes/],
    ['a record and one byte', Buffer.concat([Buffer.from([1]), Buffer.alloc(18, 1)]), /^packed_ranges: 19 bytes is not 1 \+ a multiple of 17 \(a partial record of 1 bytes/],
    ['ops 0', Buffer.concat([Buffer.from([1]), Buffer.alloc(17, 0)]), /^packed_ranges\[0\]\.ops: no operation \(byte 17 is 0\)/],
    ['ops bit 5', Buffer.concat([Buffer.from([1]), Buffer.alloc(16, 0), Buffer.from([0x22])]), /^packed_ranges\[0\]\.ops: unknown op bits 0x20 in 0x22/],
    ['ops bit 7 in the second record', Buffer.concat([Buffer.from([1]), Buffer.alloc(16), Buffer.from([2]), Buffer.alloc(16), Buffer.from([0x81])]), /^packed_ranges\[1\]\.ops: unknown op bits 0x80/],
    ['65 ranges, limit 64', Buffer.concat([Buffer.from([1]), Buffer.alloc(65 * 17, 2)]), /^packed_ranges: 65 ranges given, limit 64 per disk$/],
  ])('refused: %s', (_name, buf, msg) => {
    expect(() => unpackRanges(buf, 64)).toThrow(PackedRangesError);
    expect(() => unpackRanges(buf, 64)).toThrow(msg);
  });

  test('the client refuses to pack what it cannot encode', () => {
    expect(() => packRanges([{ start: -1, end: 2, ops: [...W] }])).toThrow(/ranges\[0\]\.start: "-1" is not a sector number/);
    expect(() => packRanges([{ start: 0, end: String(U64_MAX + 1n), ops: [...W] }])).toThrow(/beyond 2\^64-1/);
    expect(() => packRanges([{ start: 0, end: 1, ops: [] }])).toThrow(/select at least one operation/);
    expect(() => packRanges([{ start: 0, end: 1, ops: ['OP_UNSPECIFIED'] }])).toThrow(/unknown op "OP_UNSPECIFIED"/);
  });

  test(`the CLI packs from ${PACK_FROM} ranges on, and leaves fewer as Range messages`, () => {
    const ranges = (n: number) => Array.from({ length: n }, (_, i) => ({ start: i * 8, end: i * 8 + 7, ops: [...W] }));
    const few: SetFilterRequest = { device: '7:0', ranges: ranges(PACK_FROM - 1) };
    expect(compactRanges(few)).toBe(few);
    const many = compactRanges({ device: '7:0', ranges: ranges(PACK_FROM), ttlMs: 5 });
    expect(many).toMatchObject({ device: '7:0', ranges: [], ttlMs: 5 });
    expect((many.packedRanges as Buffer).length).toBe(1 + PACK_FROM * 17);
  });
});

describe('over gRPC: the same checks as repeated Range, and the views', () => {
  let agent: Agent;
  let client: IoFilterClient;
  const kernel = fakeKernel();
  beforeAll(async () => {
    const cfg = resolveConfig({ listen: '127.0.0.1:0', attach: 'observe', pinDir: '/sys/fs/bpf/unused' });
    agent = await createAgent(cfg, pino({ level: 'silent' }), kernel, fakeSysfs());
    client = new IoFilterClient(agent.address, { timeoutMs: 5000 });
  });
  afterAll(async () => {
    client.close();
    await agent.stop(1000);
  });

  const pk = (...r: [number | string, number | string][]) => packRanges(r.map(([start, end]) => ({ start, end, ops: [...W] })));
  const cases: [string, SetFilterRequest, RegExp][] = [
    ['start > end', { device: '7:0', packedRanges: pk([0, 7], [9, 1]) }, /^packed_ranges\[1\]: start 9 > end 1$/],
    ['beyond the device', { device: '7:1', packedRanges: pk([0, 131072]) }, /^packed_ranges\[0\]: end 131072 is beyond the last sector 131071 of loop0p1 \(7:1\)$/],
    ['a bad version', { device: '7:0', packedRanges: Buffer.concat([Buffer.from([9]), Buffer.alloc(17, 2)]) }, /^packed_ranges: version 9 is not supported/],
    ['a partial record', { device: '7:0', packedRanges: pk([0, 7]).subarray(0, 17) }, /partial record of 16 bytes/],
    ['no ops', { device: '7:0', packedRanges: Buffer.concat([Buffer.from([1]), Buffer.alloc(17)]) }, /^packed_ranges\[0\]\.ops: no operation/],
    ['over the limit', { device: '7:0', packedRanges: Buffer.concat([Buffer.from([1]), Buffer.alloc(65 * 17, 2)]) }, /^packed_ranges: 65 ranges given, limit 64 per disk$/],
    ['both forms', { device: '7:0', ranges: [{ start: 0, end: 7, ops: [...W] }], packedRanges: pk([8, 15]) }, /^ranges and packed_ranges: give the ranges in one of them, not both/],
    ['with whole_device_ops', { device: '7:0', packedRanges: pk([0, 7]), wholeDeviceOps: ['OP_READ'] }, /^whole_device_ops: give either ranges/],
    ['with a file', { file: '/etc/hostname', packedRanges: pk([0, 7]), wholeDeviceOps: ['OP_READ'] }, /^packed_ranges: a filter made from file "\/etc\/hostname" covers the file's extents/],
    ['an unknown view', { device: '7:0', wholeDeviceOps: ['OP_WRITE'], view: 7 as never }, /^view: unknown value 7 \(FILTER_VIEW_BASIC, FILTER_VIEW_FULL\)$/],
  ];
  test.each(cases)('refused, nothing changed: %s', async (_name, req, msg) => {
    const before = kernel.filterer!.puts;
    const err = await client.setFilter(req).then(() => null, (e) => e);
    expect(err).not.toBeNull();
    expect(status[err.code]).toBe('INVALID_ARGUMENT');
    expect(err.details).toMatch(msg);
    expect(kernel.filterer!.puts).toBe(before);
  });

  test('packed and repeated store the same filter; SetFilter answers BASIC unless asked, Status FULL unless asked', async () => {
    const ranges = [{ start: '0', end: '7', ops: ['OP_READ', 'OP_WRITE'] }, { start: '100', end: String(131071), ops: ['OP_FLUSH'] }] as SetFilterRequest['ranges'];
    const viaPacked = await client.setFilter({ device: '7:1', packedRanges: packRanges(ranges!), ttlMs: 60_000 }, 'full');
    const specPacked = kernel.filterer!.specs.at(-1)!.ranges;
    const viaRepeated = await client.setFilter({ device: '7:1', ranges, ttlMs: 60_000 }, 'full');
    expect(kernel.filterer!.specs.at(-1)!.ranges).toEqual(specPacked);
    expect(viaPacked.ranges.map((r) => [r.start, r.end, [...r.ops].sort()])).toEqual([['0', '7', ['OP_READ', 'OP_WRITE']], ['100', '131071', ['OP_FLUSH']]]);
    expect({ ...viaPacked, remainingMs: 0 }).toEqual({ ...viaRepeated, remainingMs: 0 });

    const basic = await client.setFilter({ device: '7:1', packedRanges: packRanges(ranges!), ttlMs: 60_000 });
    expect(basic.ranges).toEqual([]);
    expect(basic).toMatchObject({ id: viaPacked.id, device: { major: 7, minor: 1 }, hasExpiry: true, matchedIos: '0', failedIos: '0', wholeDevice: false });
    expect((await client.setFilter({ device: '7:1', packedRanges: packRanges(ranges!) }, 'basic')).ranges).toEqual([]);

    const full = (await client.status()).filters.find((f) => f.id === viaPacked.id)!;
    expect(full.ranges.map((r) => [r.start, r.end])).toEqual([['0', '7'], ['100', '131071']]);
    expect((await client.status('full')).filters.find((f) => f.id === viaPacked.id)!.ranges).toHaveLength(2);
    const st = await client.status('basic');
    expect(st.filters.length).toBeGreaterThan(0);
    expect(st.filters.map((f) => f.ranges.length)).toEqual(st.filters.map(() => 0));
    expect(st.filters.find((f) => f.id === viaPacked.id)).toMatchObject({ id: viaPacked.id, matchedIos: '0', hasExpiry: true });
  });
});
