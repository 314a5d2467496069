// The hand-written wire encoder of tests/helpers/protowire.ts against the agent's own
// decoder (proto-loader's deserializers, with the one set of loader options): the
// exact values the fuzz test means to send are the values the agent reads, and the
// malformed messages it sends are really undecodable.
import type * as grpc from '@grpc/grpc-js';
import { loadProto } from '../../proto';
import { FIELDS, varint, wire } from '../helpers/protowire';

const svc = loadProto().def['iofilter.v1.IoFilterService'] as grpc.ServiceDefinition;
const decode = (method: 'SetFilter' | 'DeleteFilter' | 'Attach', b: Buffer) => svc[method].requestDeserialize(b) as Record<string, any>;
const S = FIELDS.set;
const R = FIELDS.range;

test('varints: known encodings, negatives as 10-byte two\'s complement, the 64-bit limits', () => {
  expect([0, 1, 127, 128, 300].map((n) => varint(n).toString('hex'))).toEqual(['00', '01', '7f', '8001', 'ac02']);
  expect(varint(-1).toString('hex')).toBe('ff'.repeat(9) + '01');
  expect(varint((1n << 64n) - 1n)).toEqual(varint(-1));
  expect(varint(1n << 63n).toString('hex')).toBe('80'.repeat(9) + '01');
  expect(() => varint(1n << 64n)).toThrow(/does not fit/);
  expect(() => varint(-(1n << 63n) - 1n)).toThrow(/does not fit/);
});

test('a SetFilterRequest with extreme numbers decodes to exactly those numbers', () => {
  const msg = Buffer.concat([
    wire.bytes(S.device, '/dev/loop7'),
    wire.message(S.ranges, wire.varint(R.start, 1n << 63n), wire.varint(R.end, (1n << 64n) - 1n), wire.varint(R.ops, 2)),
    wire.varint(S.ttlMs, -(1n << 63n)),
    wire.double(S.probability, -0),
    wire.varint(S.maxFailures, (1n << 64n) - 1n),
    wire.varint(S.cgroupId, (1n << 64n) - 1n),
    wire.varint(S.pid, 0xffffffff),
    wire.varint(S.eventsPerSecond, 0xffffffff),
  ]);
  expect(decode('SetFilter', msg)).toMatchObject({
    device: '/dev/loop7',
    ranges: [{ start: '9223372036854775808', end: '18446744073709551615', ops: ['OP_WRITE'] }],
    ttlMs: '-9223372036854775808',
    probability: -0,
    maxFailures: '18446744073709551615',
    cgroupId: '18446744073709551615',
    pid: 4294967295,
    eventsPerSecond: 4294967295,
  });
  expect(decode('SetFilter', wire.varint(S.ttlMs, -1)).ttlMs).toBe('-1');
});

test('unknown and negative enum numbers arrive as numbers', () => {
  expect(decode('Attach', wire.varint(FIELDS.attach.mode, -1)).mode).toBe(-1);
  expect(decode('Attach', wire.varint(FIELDS.attach.mode, 99)).mode).toBe(99);
  expect(decode('SetFilter', wire.message(S.ranges, wire.varint(R.ops, -1))).ranges[0].ops).toEqual([-1]);
  expect(decode('DeleteFilter', Buffer.concat([wire.varint(FIELDS.del.id, 7), wire.bytes(FIELDS.del.device, '7:0')]))).toMatchObject({ id: 7, device: '7:0' });
});

test('malformed messages are undecodable: an 11-byte varint, wire type 7, a varint or a range cut short', () => {
  const overlong = Buffer.concat([wire.tag(S.ttlMs, 0), Buffer.from([...Array(10).fill(0xff), 0x01])]);
  expect(() => decode('SetFilter', overlong)).toThrow(/invalid varint/);
  // (a known field is read by its declared type whatever the tag says: the check is on skipping an unknown one)
  expect(() => decode('SetFilter', Buffer.concat([wire.tag(99, 7), Buffer.from([1, 2, 3])]))).toThrow(/wire type 7/);
  const ttl = wire.varint(S.ttlMs, -1);
  expect(() => decode('SetFilter', ttl.subarray(0, ttl.length - 1))).toThrow(/index out of range/);
  const range = wire.message(S.ranges, wire.varint(R.start, 1), wire.varint(R.end, 2));
  expect(() => decode('SetFilter', range.subarray(0, range.length - 1))).toThrow(/index out of range/);
  // (a string cut short is not: protobufjs reads what is there)
  const device = wire.bytes(S.device, '/dev/loop7');
  expect(decode('SetFilter', device.subarray(0, device.length - 1)).device).toBe('/dev/loop');
});
