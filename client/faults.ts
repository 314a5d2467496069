// The fault kinds as people type them, for `set` and for plans alike:
//   --error enospc   --delay 50ms | read=50ms,write=10ms,flush=0   --drop-writes
//   --throttle wbps=1M,riops=100   --corrupt read,byte=1,value=0x55 | write,rate=1000
// Everything throws UsageError before any host is contacted; the agent checks again.
import { ERROR_STATUSES, errorStatus } from '../proto/faults';
import type { Fault } from '../proto/gen/iofilter/v1/Fault';
import { parseDuration } from './args';
import { UsageError } from './errors';

/** What one filter asks for; at most one may be given. */
export interface FaultWords {
  error?: string;
  delay?: string;
  throttle?: string;
  dropWrites?: boolean;
  corrupt?: string;
}

export const FAULT_HELP = {
  error: `fail with this status instead of EIO: ${ERROR_STATUSES.map((s) => s.errno.toLowerCase()).join(', ')} (only EIO on the bpf and dm backends)`,
  delay: 'delay matching I/O instead of failing it (dm devices): 50ms for reads, writes and flushes, or read=50ms,write=10ms,flush=0',
  throttle: 'limit the cgroup\'s I/O to the device (cgroup v2 io.max; needs --cgroup or --pid): rbps=10M,wbps=1M,riops=100,wiops=100',
  dropWrites: 'acknowledge writes and discard them (lost writes; dm devices)',
  corrupt: 'change data instead of failing (dm devices): read|write,byte=N,value=V (byte N of each I/O, 1 is the first) or read|write,rate=PER_BILLION',
};

const key = (w: FaultWords) => (['error', 'delay', 'throttle', 'dropWrites', 'corrupt'] as const).filter((k) => w[k] !== undefined && w[k] !== false);

/** key=value,key=value -> map; every key must be one of `allowed`. */
function pairs(s: string, what: string, allowed: string[], example: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const part of s.split(',').map((x) => x.trim())) {
    const kv = /^([a-z_]+)=(.+)$/.exec(part);
    if (!kv || !allowed.includes(kv[1])) throw new UsageError(`bad ${what} "${s}": "${part}" is not one of ${allowed.map((a) => `${a}=...`).join(', ')} (e.g. ${example})`);
    if (m.has(kv[1])) throw new UsageError(`bad ${what} "${s}": ${kv[1]} given twice`);
    m.set(kv[1], kv[2]);
  }
  return m;
}

/** "1M" -> 1048576 (K, M, G, T: powers of 1024), "max" -> 0 (no limit). */
export function parseSize(s: string, what: string): string {
  if (s === 'max') return '0';
  const m = /^(\d+)([KMGT]?)(i?B)?$/i.exec(s.trim());
  if (!m) throw new UsageError(`bad ${what} "${s}": a whole number, optionally with K, M, G or T (powers of 1024), or max`);
  const mult = 1024n ** BigInt(['', 'K', 'M', 'G', 'T'].indexOf(m[2].toUpperCase()));
  const v = BigInt(m[1]) * mult;
  if (v >= 1n << 64n) throw new UsageError(`bad ${what} "${s}": too large`);
  return String(v);
}

function ms(s: string, what: string): number {
  const v = parseDuration(s, what);
  if (v > 3_600_000) throw new UsageError(`bad ${what} "${s}": at most 1h`);
  return v;
}

function int(s: string, what: string, max: number): number {
  const v = /^0x[0-9a-f]+$/i.test(s) ? parseInt(s, 16) : /^\d+$/.test(s) ? Number(s) : NaN;
  if (!Number.isInteger(v) || v > max) throw new UsageError(`bad ${what} "${s}": a whole number up to ${max}`);
  return v;
}

/** The Fault the words ask for; undefined when none is given (the agent's default: error EIO). */
export function faultFromWords(w: FaultWords, flag = (k: string) => `--${k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())}`): Fault | undefined {
  const given = key(w);
  if (given.length > 1) throw new UsageError(`${given.map(flag).join(' and ')}: a filter has one fault kind`);
  switch (given[0]) {
    case undefined:
      return undefined;
    case 'error': {
      const s = errorStatus(w.error);
      if (!s || !w.error) throw new UsageError(`bad ${flag('error')} "${w.error}": one of ${ERROR_STATUSES.map((x) => x.errno.toLowerCase()).join(', ')}`);
      return { error: { status: s.wire } };
    }
    case 'delay': {
      const d = w.delay!;
      if (!d.includes('=')) {
        const v = ms(d, flag('delay'));
        if (!v) throw new UsageError(`bad ${flag('delay')} "${d}": must be more than 0`);
        return { delay: { readMs: v, writeMs: v, flushMs: v } };
      }
      const m = pairs(d, flag('delay'), ['read', 'write', 'flush'], 'read=50ms,write=10ms');
      const r = { readMs: ms(m.get('read') ?? '0', `${flag('delay')} read`), writeMs: ms(m.get('write') ?? '0', `${flag('delay')} write`), flushMs: ms(m.get('flush') ?? '0', `${flag('delay')} flush`) };
      if (!r.readMs && !r.writeMs && !r.flushMs) throw new UsageError(`bad ${flag('delay')} "${d}": every delay is 0`);
      return { delay: r };
    }
    case 'throttle': {
      const m = pairs(w.throttle!, flag('throttle'), ['rbps', 'wbps', 'riops', 'wiops'], 'wbps=1M,riops=100');
      const t = Object.fromEntries(['rbps', 'wbps', 'riops', 'wiops'].map((k) => [k, m.has(k) ? parseSize(m.get(k)!, `${flag('throttle')} ${k}`) : '0']));
      if (Object.values(t).every((v) => v === '0')) throw new UsageError(`bad ${flag('throttle')} "${w.throttle}": give at least one limit`);
      return { throttle: t };
    }
    case 'dropWrites':
      return { dropWrites: {} };
    case 'corrupt': {
      const [dir, ...rest] = w.corrupt!.split(',');
      if (dir !== 'read' && dir !== 'write') throw new UsageError(`bad ${flag('corrupt')} "${w.corrupt}": start with read or write (e.g. read,byte=1,value=0x55)`);
      const direction = dir === 'write' ? 'CORRUPT_DIRECTION_WRITE' : 'CORRUPT_DIRECTION_READ';
      const m = rest.length ? pairs(rest.join(','), flag('corrupt'), ['byte', 'value', 'rate'], 'read,byte=1,value=0x55') : new Map<string, string>();
      if (m.has('rate')) {
        if (m.has('byte') || m.has('value')) throw new UsageError(`bad ${flag('corrupt')} "${w.corrupt}": give rate, or byte and value, not both`);
        const rate = int(m.get('rate')!, `${flag('corrupt')} rate`, 1_000_000_000);
        if (!rate) throw new UsageError(`bad ${flag('corrupt')} "${w.corrupt}": rate must be more than 0 (per billion I/Os)`);
        return { corrupt: { direction, perBillion: rate } };
      }
      if (!m.has('byte') || !m.has('value')) throw new UsageError(`bad ${flag('corrupt')} "${w.corrupt}": give byte=N and value=V (e.g. ${dir},byte=1,value=0x55), or rate=PER_BILLION`);
      const byte = int(m.get('byte')!, `${flag('corrupt')} byte`, 0xffff_ffff);
      if (!byte) throw new UsageError(`bad ${flag('corrupt')} "${w.corrupt}": byte counts from 1`);
      return { corrupt: { direction, byte, value: int(m.get('value')!, `${flag('corrupt')} value`, 255) } };
    }
  }
}

/** A plan filter's keys for the fault kind (the same words as `set`'s flags). */
export const FAULT_KEYS = ['error', 'delay', 'throttle', 'dropWrites', 'corrupt'] as const;
