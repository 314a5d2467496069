// The Protocol Buffers wire format by hand, for tests that must choose the exact bytes:
// negative int64 and full-width uint64 varints (which a client library would wrap or
// refuse before sending) and malformed messages (overlong varints, bad wire types,
// truncated fields). Field numbers are the proto's; see tests/unit/protowire.test.ts.

const U64 = 1n << 64n;

/** A varint of a 64-bit value: -(2^63)..2^64-1, negatives in two's complement (10 bytes), as int64 is sent. */
export function varint(value: bigint | number): Buffer {
  let v = BigInt(value);
  if (v < -(1n << 63n) || v >= U64) throw new RangeError(`${v} does not fit in 64 bits`);
  if (v < 0n) v += U64;
  const out: number[] = [];
  do {
    const low = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v ? low | 0x80 : low);
  } while (v);
  return Buffer.from(out);
}

const tag = (field: number, wireType: number) => varint((field << 3) | wireType);

/** One field of a message, encoded. */
export const wire = {
  varint: (field: number, v: bigint | number | boolean) => Buffer.concat([tag(field, 0), varint(typeof v === 'boolean' ? Number(v) : v)]),
  double: (field: number, x: number) => {
    const b = Buffer.alloc(8);
    b.writeDoubleLE(x);
    return Buffer.concat([tag(field, 1), b]);
  },
  bytes: (field: number, b: Buffer | string) => {
    const data = typeof b === 'string' ? Buffer.from(b, 'utf8') : b;
    return Buffer.concat([tag(field, 2), varint(data.length), data]);
  },
  message: (field: number, ...parts: Buffer[]) => wire.bytes(field, Buffer.concat(parts)),
  /** A field with a raw wire type (6 and 7 do not exist). */
  tag,
};

/** SetFilterRequest, DeleteFilterRequest, AttachRequest and Range field numbers (proto/iofilter/v1/iofilter.proto). */
export const FIELDS = {
  set: { device: 1, ranges: 2, wholeDeviceOps: 3, ttlMs: 4, probability: 5, maxFailures: 6, file: 7, cgroupPath: 8, cgroupId: 9, pid: 10, eventsPerSecond: 11, eventsSpared: 12 },
  range: { start: 1, end: 2, ops: 3 },
  del: { device: 1, cgroupPath: 2, cgroupId: 3, pid: 4, allScopes: 5, id: 6 },
  attach: { mode: 1 },
} as const;
