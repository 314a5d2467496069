// SetFilterRequest.packed_ranges (field 31): a filter's ranges in a compact form, so a
// 4096-range request is one 68 KiB byte string instead of 4096 Range messages that
// protobufjs decodes field by field (issue 25). Layout, version 1, little-endian:
//
//   byte 0          version, 1
//   then N records of 17 bytes each (N >= 1), in the order of `repeated Range`:
//     bytes 0-7     start sector, u64
//     bytes 8-15    end sector, u64 (inclusive)
//     byte 16       ops bitmask: bit k is Op value k+1 (1 read, 2 write, 4 flush,
//                   8 discard, 16 write_zeroes); at least one bit; bits 5-7 are 0
//
// The agent decodes it here and then checks every range exactly as it checks
// `repeated Range` (start <= end, end on the device, the range limit). The client
// encodes with packRanges.
import type { Op as NativeOp } from '../native';
import type { Range } from './gen/iofilter/v1/Range';
import { OP_NAMES, opToWire } from './names';

export const PACKED_VERSION = 1;
export const PACKED_RECORD_BYTES = 17;
const U64_MAX = (1n << 64n) - 1n;
const KNOWN_BITS = (1 << OP_NAMES.length) - 1;

export interface SectorOps {
  start: bigint;
  end: bigint;
  ops: NativeOp[];
}

/** Malformed packed_ranges: the message names the field, the record and the byte. */
export class PackedRangesError extends Error {}

// the ops of each of the 31 valid masks, built once: 4096 records share them (frozen,
// so nothing downstream can change one record's ops through another's)
const OPS_OF_MASK = Array.from({ length: KNOWN_BITS + 1 }, (_, m) => Object.freeze(OP_NAMES.filter((_o, k) => m & (1 << k))) as NativeOp[]);

/** How many records `buf` holds, or a PackedRangesError for a bad version or length. */
export function packedCount(buf: Uint8Array): number {
  if (buf.length === 0) throw new PackedRangesError('packed_ranges: empty (leave it unset and give ranges or whole_device_ops)');
  if (buf[0] !== PACKED_VERSION) throw new PackedRangesError(`packed_ranges: version ${buf[0]} is not supported (this agent reads version ${PACKED_VERSION})`);
  const body = buf.length - 1;
  if (body === 0) throw new PackedRangesError('packed_ranges: version byte and no range (leave it unset for the whole device)');
  if (body % PACKED_RECORD_BYTES)
    throw new PackedRangesError(`packed_ranges: ${buf.length} bytes is not 1 + a multiple of ${PACKED_RECORD_BYTES} (a partial record of ${body % PACKED_RECORD_BYTES} bytes at the end)`);
  return body / PACKED_RECORD_BYTES;
}

/**
 * Decodes version 1. Checks the form only (version, length, ops bits); the ranges'
 * meaning (start <= end, on the device) is checked by the caller as for `repeated Range`.
 * `maxRanges` is checked from the length, before anything is decoded.
 */
export function unpackRanges(buf: Uint8Array, maxRanges: number): SectorOps[] {
  const n = packedCount(buf);
  if (n > maxRanges) throw new PackedRangesError(`packed_ranges: ${n} ranges given, limit ${maxRanges} per disk`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: SectorOps[] = new Array(n);
  for (let i = 0, at = 1; i < n; i++, at += PACKED_RECORD_BYTES) {
    const mask = buf[at + 16];
    if (mask === 0) throw new PackedRangesError(`packed_ranges[${i}].ops: no operation (byte ${at + 16} is 0): select at least one`);
    if (mask & ~KNOWN_BITS) throw new PackedRangesError(`packed_ranges[${i}].ops: unknown op bits 0x${(mask & ~KNOWN_BITS).toString(16)} in 0x${mask.toString(16)} (bits 0-4: read, write, flush, discard, write_zeroes)`);
    out[i] = { start: view.getBigUint64(at, true), end: view.getBigUint64(at + 8, true), ops: OPS_OF_MASK[mask] };
  }
  return out;
}

const OP_BIT: Record<string, number> = Object.fromEntries(OP_NAMES.map((o, k) => [opToWire(o), 1 << k]));

/** Writes a sector number (number, decimal string or Long) as u64 LE; numbers below 2^53 avoid BigInt. */
function writeSector(buf: Buffer, at: number, v: Range['start'], what: string): void {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) {
    buf.writeUInt32LE(v % 2 ** 32, at);
    buf.writeUInt32LE(Math.floor(v / 2 ** 32), at + 4);
    return;
  }
  const s = typeof v === 'object' && v !== null ? v.toString() : String(v ?? 0);
  if (!/^\d+$/.test(s)) throw new PackedRangesError(`${what}: ${JSON.stringify(s)} is not a sector number`);
  if (s.length < 16) return writeSector(buf, at, Number(s), what);
  const b = BigInt(s);
  if (b > U64_MAX) throw new PackedRangesError(`${what}: ${s} is beyond 2^64-1`);
  buf.writeBigUInt64LE(b, at);
}

/** Encodes ranges as the client has them (wire ops, decimal or numeric sectors) in version 1. */
export function packRanges(ranges: readonly Range[]): Buffer {
  const buf = Buffer.allocUnsafe(1 + ranges.length * PACKED_RECORD_BYTES); // every byte is written below
  buf[0] = PACKED_VERSION;
  ranges.forEach((r, i) => {
    const at = 1 + i * PACKED_RECORD_BYTES;
    writeSector(buf, at, r.start, `ranges[${i}].start`);
    writeSector(buf, at + 8, r.end, `ranges[${i}].end`);
    let mask = 0;
    for (const o of r.ops ?? []) {
      const bit = typeof o === 'string' ? OP_BIT[o] : undefined;
      if (!bit) throw new PackedRangesError(`ranges[${i}].ops: unknown op ${JSON.stringify(o)}`);
      mask |= bit;
    }
    if (!mask) throw new PackedRangesError(`ranges[${i}].ops: select at least one operation`);
    buf[at + 16] = mask;
  });
  return buf;
}
