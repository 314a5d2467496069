// What a filter does to the I/O it matches (SetFilterRequest.fault), checked and in
// the agent's own terms. Each backend says which kinds it can produce (backends/*);
// here only the request itself is judged: bad values are INVALID_ARGUMENT.
import type { Op } from '../native';
import type { Fault } from '../proto/gen/iofilter/v1/Fault';
import type { Fault__Output } from '../proto/gen/iofilter/v1/Fault';
import { errorStatus, StatusName } from '../proto/faults';
import { invalid } from './errors';

export type FaultSpec =
  | { kind: 'error'; status: StatusName }
  | { kind: 'delay'; readMs: number; writeMs: number; flushMs: number }
  | { kind: 'throttle'; rbps: bigint; wbps: bigint; riops: bigint; wiops: bigint }
  | { kind: 'drop-writes' }
  | { kind: 'corrupt'; direction: 'read' | 'write'; byte: number; value: number; perBillion: number };

export const EIO: FaultSpec = { kind: 'error', status: errorStatus('IOERR')! };

/** dm-delay takes a delay in ms as an unsigned int; an hour is past any useful experiment. */
export const MAX_DELAY_MS = 3_600_000;
const U64_MAX = (1n << 64n) - 1n;

const big = (v: unknown, field: string): bigint => {
  const s = typeof v === 'bigint' ? v : typeof v === 'number' || (typeof v === 'string' && /^\d+$/.test(v)) ? BigInt(v) : null;
  if (s === null || s < 0n || s > U64_MAX) throw invalid(`${field}: ${JSON.stringify(v)} is not an unsigned 64-bit integer`);
  return s;
};
const u32 = (v: unknown, field: string, max: number): number => {
  const n = Number(v ?? 0);
  if (!Number.isInteger(n) || n < 0 || n > max) throw invalid(`${field}: ${JSON.stringify(v)} must be an integer in 0..${max}`);
  return n;
};

/** The request's fault (unset: error EIO), or INVALID_ARGUMENT naming the field. */
export function faultFromWire(f: Fault__Output | null | undefined): FaultSpec {
  const set = f ? (['error', 'delay', 'throttle', 'dropWrites', 'corrupt'] as const).filter((k) => f[k]) : [];
  if (set.length > 1) throw invalid(`fault: ${set.join(' and ')} given: a filter has one fault kind`);
  const kind = f?.kind ?? set[0] ?? 'error';
  switch (kind) {
    case 'error': {
      const s = errorStatus(f?.error?.status);
      if (!s) throw invalid(`fault.error.status: unknown status ${JSON.stringify(f?.error?.status)}`);
      return { kind: 'error', status: s };
    }
    case 'delay': {
      const d = f!.delay!;
      const r = { readMs: u32(d.readMs, 'fault.delay.read_ms', MAX_DELAY_MS), writeMs: u32(d.writeMs, 'fault.delay.write_ms', MAX_DELAY_MS), flushMs: u32(d.flushMs, 'fault.delay.flush_ms', MAX_DELAY_MS) };
      if (!r.readMs && !r.writeMs && !r.flushMs) throw invalid('fault.delay: every delay is 0: give read_ms, write_ms or flush_ms');
      return { kind: 'delay', ...r };
    }
    case 'throttle': {
      const t = f!.throttle!;
      const r = { rbps: big(t.rbps ?? 0, 'fault.throttle.rbps'), wbps: big(t.wbps ?? 0, 'fault.throttle.wbps'), riops: big(t.riops ?? 0, 'fault.throttle.riops'), wiops: big(t.wiops ?? 0, 'fault.throttle.wiops') };
      if (!r.rbps && !r.wbps && !r.riops && !r.wiops) throw invalid('fault.throttle: every limit is 0 (no limit): give rbps, wbps, riops or wiops');
      return { kind: 'throttle', ...r };
    }
    case 'dropWrites':
      return { kind: 'drop-writes' };
    case 'corrupt': {
      const c = f!.corrupt!;
      const direction = c.direction === 'CORRUPT_DIRECTION_WRITE' ? 'write' : c.direction === 'CORRUPT_DIRECTION_READ' || c.direction === 'CORRUPT_DIRECTION_UNSPECIFIED' || !c.direction ? 'read' : null;
      if (!direction) throw invalid(`fault.corrupt.direction: unknown ${JSON.stringify(c.direction)}`);
      const perBillion = u32(c.perBillion, 'fault.corrupt.per_billion', 1_000_000_000);
      const byte = u32(c.byte, 'fault.corrupt.byte', 0xffff_ffff);
      const value = u32(c.value, 'fault.corrupt.value', 255);
      if (perBillion && (byte || value)) throw invalid('fault.corrupt: give either per_billion (random bytes) or byte and value, not both');
      if (!perBillion && !byte) throw invalid('fault.corrupt.byte: which byte of each bio to change (1 is the first), or per_billion');
      return { kind: 'corrupt', direction, byte, value, perBillion };
    }
  }
  throw invalid(`fault: unknown kind ${JSON.stringify(kind)}`);
}

export function faultToWire(f: FaultSpec): Fault {
  switch (f.kind) {
    case 'error':
      return { error: { status: f.status.wire } };
    case 'delay':
      return { delay: { readMs: f.readMs, writeMs: f.writeMs, flushMs: f.flushMs } };
    case 'throttle':
      return { throttle: { rbps: String(f.rbps), wbps: String(f.wbps), riops: String(f.riops), wiops: String(f.wiops) } };
    case 'drop-writes':
      return { dropWrites: {} };
    case 'corrupt':
      return { corrupt: { direction: f.direction === 'write' ? 'CORRUPT_DIRECTION_WRITE' : 'CORRUPT_DIRECTION_READ', byte: f.byte, value: f.value, perBillion: f.perBillion } };
  }
}

/**
 * The ops a kind acts on, which a request may leave out (null: error, where the
 * request chooses). What the kernel's targets do (dm-delay.c, dm-flakey.c): delay
 * holds every bio by its direction (flushes by the flush delay); drop_writes drops every
 * bio whose direction is WRITE (writes, flushes, discards, write-zeroes); corruption
 * touches only data bios of its direction.
 */
export function impliedOps(f: FaultSpec): Op[] | null {
  switch (f.kind) {
    case 'error':
      return null;
    case 'delay':
      return ['read', 'write', 'flush', 'discard', 'write_zeroes'];
    case 'throttle':
      return ['read', 'write'];
    case 'drop-writes':
      return ['write', 'flush', 'discard', 'write_zeroes'];
    case 'corrupt':
      return [f.direction];
  }
}
