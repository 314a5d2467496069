// The cases of the fuzz test (tests/host/fuzz.test.ts): malformed requests, each with
// the answer it must get. Three kinds, told apart by who answers them:
// - typed: well-formed messages sent through IoFilterClient; the agent's validation
//   answers with the case's code - never INTERNAL, which would be a throw in our code;
// - raw: hand-encoded messages with numbers a client library would wrap or refuse
//   (negative int64, full-width uint64, negative and unknown enums); the agent must see
//   them exactly, so its message must name them;
// - undecodable: bytes the agent's deserializer cannot read; grpc-js answers INTERNAL
//   "Error deserializing request" before our code runs. Random bytes are sorted into
//   this kind or the raw one by decoding them with that same deserializer.
import type * as grpc from '@grpc/grpc-js';
import { loadProto } from '../../proto';
import type { DeleteFilterRequest } from '../../proto/gen/iofilter/v1/DeleteFilterRequest';
import type { SetFilterRequest } from '../../proto/gen/iofilter/v1/SetFilterRequest';
import { FIELDS, wire } from './protowire';
import type { Rng } from './rng';

export type Method = 'SetFilter' | 'DeleteFilter' | 'Attach';

export interface Expected {
  /** The code, or the codes, the answer may have. */
  code: string | string[];
  details?: RegExp;
}

export interface FuzzCase {
  kind: string;
  method: Method;
  /** The agent's own code answers (and logs) it; false: grpc-js refuses the bytes first. */
  ours: boolean;
  expected: Expected;
  typed?: SetFilterRequest | DeleteFilterRequest;
  bytes?: Buffer;
}

export interface Target {
  device: string; // a loop device path
  sizeSectors: bigint;
  /** Device strings that are not a usable block device, with the code each must get. */
  badDevices: [string, string][];
  /** Whether the agent's kernel can scope filters by cgroup (Status.features.cgroups). */
  cgroups: boolean;
}

const U64_MAX = (1n << 64n) - 1n;
const INVALID = 'INVALID_ARGUMENT';
const GRPC_UNDECODABLE: Expected = { code: 'INTERNAL', details: /^Error deserializing request/ };
const S = FIELDS.set;
const R = FIELDS.range;

const services = () => loadProto().def['iofilter.v1.IoFilterService'] as grpc.ServiceDefinition;
/** The agent's deserializer for `method` (same loader options); throws on undecodable bytes. */
export const decode = (method: Method, b: Buffer) => services()[method].requestDeserialize(b) as Record<string, any>;

/** A raw message whose decoding is checked first: the bytes must say what the case means. */
function raw(kind: string, method: Method, bytes: Buffer, check: (m: Record<string, any>) => unknown, expected: Expected): FuzzCase {
  const m = decode(method, bytes);
  if (!check(m)) throw new Error(`${kind}: the hand-encoded message decodes to ${JSON.stringify(m)}`);
  return { kind, method, ours: true, expected, bytes };
}

const typed = (kind: string, method: 'SetFilter' | 'DeleteFilter', req: SetFilterRequest | DeleteFilterRequest, expected: Expected): FuzzCase => ({ kind, method, ours: true, expected, typed: req });

/** Every generator, by kind; each draws what it needs from `r` at once (so a seed gives one sequence). */
export function generators(t: Target): Record<string, (r: Rng) => FuzzCase> {
  const size = t.sizeSectors;
  const dev = wire.bytes(S.device, t.device);
  const write = wire.varint(R.ops, 2);
  const range = (start: bigint | number, end: bigint | number, ...more: Buffer[]) => wire.message(S.ranges, wire.varint(R.start, start), wire.varint(R.end, end), ...more);
  return {
    'typed: start > end': (r) => {
      const s = 1 + r.int(Number(size) - 1);
      const e = r.int(s);
      return typed('typed: start > end', 'SetFilter', { device: t.device, ranges: [{ start: s, end: e, ops: ['OP_READ'] }] }, { code: INVALID, details: new RegExp(`ranges\\[0\\]: start ${s} > end ${e}$`) });
    },
    'typed: a range past the device': (r) => {
      const e = r.int(2) ? size + BigInt(r.int(1e9)) : U64_MAX;
      return typed('typed: a range past the device', 'SetFilter', { device: t.device, ranges: [{ start: 0, end: String(e), ops: ['OP_WRITE'] }] }, { code: INVALID, details: new RegExp(`end ${e} is beyond the last sector ${size - 1n}`) });
    },
    'typed: probability outside (0, 1]': (r) => {
      const p = r.pick([NaN, 0, -1, 1.0000001, Infinity, -Infinity, 1e308, -5e-324]);
      return typed('typed: probability outside (0, 1]', 'SetFilter', { device: t.device, wholeDeviceOps: ['OP_WRITE'], probability: p }, { code: INVALID, details: /^probability: .* must be in \(0, 1\]$/ });
    },
    'typed: ttl over the maximum': (r) => {
      const ttl = r.pick(['3600001', '9223372036854775807', String(3_600_001 + r.int(1e9))]);
      return typed('typed: ttl over the maximum', 'SetFilter', { device: t.device, wholeDeviceOps: ['OP_WRITE'], ttlMs: ttl }, { code: INVALID, details: new RegExp(`^ttl_ms: ${ttl} exceeds this agent's maximum TTL`) });
    },
    'typed: unknown op': (r) => {
      const op = r.pick([0, 6, 99, 2147483647]) as unknown as 'OP_READ';
      return typed('typed: unknown op', 'SetFilter', { device: t.device, ranges: [{ start: 0, end: 1, ops: [op] }] }, { code: INVALID, details: /^ranges\[0\]\.ops: unknown op/ });
    },
    'typed: more than 4096 ranges': (r) => {
      const n = 4097 + r.int(200);
      const ranges = Array.from({ length: n }, (_, i) => ({ start: i, end: i, ops: ['OP_READ' as const] }));
      return typed('typed: more than 4096 ranges', 'SetFilter', { device: t.device, ranges }, { code: INVALID, details: new RegExp(`^ranges: ${n} given, limit 4096`) });
    },
    'typed: ops given twice or not at all': (r) =>
      r.int(2)
        ? typed('typed: ops given twice or not at all', 'SetFilter', { device: t.device, ranges: [{ start: 0, end: 1, ops: ['OP_READ'] }], wholeDeviceOps: ['OP_WRITE'] }, { code: INVALID, details: /give either ranges/ })
        : typed('typed: ops given twice or not at all', 'SetFilter', { device: t.device }, { code: INVALID, details: /select at least one operation/ }),
    'typed: two cgroup scopes': () =>
      typed('typed: two cgroup scopes', 'SetFilter', { device: t.device, wholeDeviceOps: ['OP_WRITE'], cgroupPath: '/', pid: 1 }, { code: INVALID, details: /give at most one cgroup scope/ }),
    'typed: not a usable device (SetFilter)': (r) => {
      const [d, code] = r.pick(t.badDevices);
      return typed('typed: not a usable device (SetFilter)', 'SetFilter', { device: d, wholeDeviceOps: ['OP_WRITE'] }, { code });
    },
    'typed: not a usable device (DeleteFilter)': (r) => {
      const [d, code] = r.pick(t.badDevices);
      return typed('typed: not a usable device (DeleteFilter)', 'DeleteFilter', { device: d }, { code });
    },
    'raw: uint64 sectors at the top of the range': (r) => {
      const [s, e] = r.pick([[0n, U64_MAX], [U64_MAX, U64_MAX], [1n << 63n, 1n << 63n], [size, (1n << 63n) - 1n], [0n, size + (r.u64() % (U64_MAX - size))]]);
      return raw('raw: uint64 sectors at the top of the range', 'SetFilter', Buffer.concat([dev, range(s, e, write)]), (m) => m.ranges[0].end === String(e), { code: INVALID, details: new RegExp(`end ${e} is beyond the last sector`) });
    },
    'raw: ttl_ms at and beyond the int64 limits': (r) => {
      const ttl = r.pick([-1n, -(1n << 63n), -3_600_000n, -BigInt(1 + r.int(2 ** 31)), (1n << 63n) - 1n]);
      const why = ttl < 0n ? `ttl_ms: ${ttl} is negative` : `ttl_ms: ${ttl} exceeds`;
      return raw('raw: ttl_ms at and beyond the int64 limits', 'SetFilter', Buffer.concat([dev, wire.varint(S.wholeDeviceOps, 2), wire.varint(S.ttlMs, ttl)]), (m) => m.ttlMs === String(ttl), { code: INVALID, details: new RegExp(`^${why}`) });
    },
    'raw: uint32 fields at 2^32-1': (r) =>
      r.int(2)
        ? raw('raw: uint32 fields at 2^32-1', 'SetFilter', Buffer.concat([dev, wire.varint(S.wholeDeviceOps, 2), wire.varint(S.pid, 0xffffffff)]), (m) => m.pid === 4294967295, { code: INVALID, details: /^pid: 4294967295 is out of range/ })
        : raw('raw: uint32 fields at 2^32-1', 'SetFilter', Buffer.concat([dev, wire.varint(S.wholeDeviceOps, 2), wire.varint(S.eventsPerSecond, 0xffffffff)]), (m) => m.eventsPerSecond === 4294967295, { code: INVALID, details: /^events_per_second: 4294967295 must be 0\.\.1000000/ }),
    'raw: a cgroup id no cgroup has': (r) => {
      const id = (1n << 63n) | r.u64();
      const expected: Expected = t.cgroups ? { code: 'NOT_FOUND', details: new RegExp(`cgroup_id: ${id}: no cgroup with this id`) } : { code: 'FAILED_PRECONDITION', details: /cannot scope filters by cgroup/ };
      return raw('raw: a cgroup id no cgroup has', 'SetFilter', Buffer.concat([dev, wire.varint(S.wholeDeviceOps, 2), wire.varint(S.cgroupId, id)]), (m) => m.cgroupId === String(id), expected);
    },
    'raw: negative and unknown op numbers': (r) => {
      const op = r.pick([-1, -(2 ** 31), 6, 1000]);
      return raw('raw: negative and unknown op numbers', 'SetFilter', Buffer.concat([dev, range(0, 1, wire.varint(R.ops, op))]), (m) => m.ranges[0].ops[0] === op, { code: INVALID, details: new RegExp(`^ranges\\[0\\]\\.ops: unknown op ${op} `) });
    },
    'raw: Attach with a mode that does not exist': (r) => {
      const mode = r.pick([-1, 5 + r.int(120), 2 ** 31 - 1]);
      return raw('raw: Attach with a mode that does not exist', 'Attach', wire.varint(FIELDS.attach.mode, mode), (m) => m.mode === mode, { code: INVALID, details: new RegExp(`^mode: unknown value ${mode} `) });
    },
    'raw: DeleteFilter by id and device at once': (r) => {
      const id = 1 + r.int(2 ** 31);
      return raw('raw: DeleteFilter by id and device at once', 'DeleteFilter', Buffer.concat([wire.varint(FIELDS.del.id, id), wire.bytes(FIELDS.del.device, t.device)]), (m) => m.id === id, { code: INVALID, details: new RegExp(`^id: ${id}: give the filter id alone`) });
    },
    'undecodable: a varint over 64 bits': (r) => {
      const bytes = Buffer.concat([dev, wire.tag(S.ttlMs, 0), Buffer.from([...Array(10 + r.int(4)).fill(0xff), 0x01])]);
      return { kind: 'undecodable: a varint over 64 bits', method: 'SetFilter', ours: false, expected: GRPC_UNDECODABLE, bytes };
    },
    'undecodable: wire type 6 or 7': (r) => {
      const bytes = Buffer.concat([dev, wire.tag(100 + r.int(1000), 6 + r.int(2)), r.bytes(r.int(8))]);
      return { kind: 'undecodable: wire type 6 or 7', method: r.pick(['SetFilter', 'DeleteFilter'] as const), ours: false, expected: GRPC_UNDECODABLE, bytes };
    },
    'undecodable: cut short': (r) => {
      const whole = r.int(2) ? Buffer.concat([dev, wire.varint(S.ttlMs, -1)]) : Buffer.concat([dev, range(0, U64_MAX, write)]);
      return { kind: 'undecodable: cut short', method: 'SetFilter', ours: false, expected: GRPC_UNDECODABLE, bytes: whole.subarray(0, whole.length - 1 - r.int(3)) };
    },
    'random bytes': (r) => {
      for (;;) {
        const method = r.pick(['SetFilter', 'DeleteFilter'] as const);
        const bytes = r.bytes(r.int(512));
        let m: Record<string, any>;
        try {
          m = decode(method, bytes);
        } catch {
          return { kind: 'random bytes', method, ours: false, expected: GRPC_UNDECODABLE, bytes };
        }
        // bytes that happen to make a request that could succeed (a delete by id, a
        // device by number) are not hostile input: draw again
        if (m.id || /^\d+:\d+$/.test(m.device) || m.device.startsWith('/dev/')) continue;
        return { kind: 'random bytes', method, ours: true, expected: { code: [INVALID, 'NOT_FOUND', 'FAILED_PRECONDITION'] }, bytes };
      }
    },
  };
}

/** Whether an answer is what the case expected. */
export function asExpected(e: Expected, a: { code: string; details: string }): boolean {
  const codes = Array.isArray(e.code) ? e.code : [e.code];
  return codes.includes(a.code) && (!e.details || e.details.test(a.details));
}
