// Pure parsing and validation of what people type: hosts, devices, sector ranges,
// durations. Everything here throws UsageError before any network call is made.
import * as fs from 'node:fs';
import { parseDeviceSpec } from '../proto/devices';
import { UsageError } from './errors';
import { normalizeHost } from './hosts';

/**
 * --host values (repeatable, comma lists) and a hosts file (one or more per line, `#`
 * comments, blank lines; `-` reads stdin), normalised, de-duplicated, order kept.
 */
export function parseHosts(hostArgs: string[], hostsFile?: string): string[] {
  const raw: string[] = [];
  for (const a of hostArgs) raw.push(...a.split(','));
  if (hostsFile) {
    let text: string;
    try {
      text = fs.readFileSync(hostsFile === '-' ? 0 : hostsFile, 'utf8');
    } catch (e) {
      throw new UsageError(`cannot read hosts file ${hostsFile}: ${(e as Error).message}`);
    }
    for (const line of text.split('\n')) {
      const l = line.replace(/#.*/, '').trim();
      if (l) raw.push(...l.split(/[\s,]+/));
    }
  }
  const out = [...new Set(raw.filter((h) => h.trim()).map(normalizeHost))];
  if (!out.length) throw new UsageError('no host: give --host H (repeatable, comma lists) or --hosts-file F');
  return out;
}

/** "500ms", "30s", "5m", "1h", "1h30m", or a plain number of seconds -> milliseconds. */
export function parseDuration(s: string, what = 'duration'): number {
  const t = s.trim();
  if (/^\d+(\.\d+)?$/.test(t)) {
    const ms = Math.round(Number(t) * 1000);
    if (ms > Number.MAX_SAFE_INTEGER) throw new UsageError(`bad ${what} "${s}": too long`);
    return ms;
  }
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  let total = 0;
  let m: RegExpExecArray | null;
  let pos = 0;
  while ((m = re.exec(t))) {
    total += Number(m[1]) * unit[m[2]];
    pos = re.lastIndex;
  }
  if (!t || pos !== t.length) throw new UsageError(`bad ${what} "${s}": use e.g. 500ms, 30s, 5m, 1h30m`);
  if (total > Number.MAX_SAFE_INTEGER) throw new UsageError(`bad ${what} "${s}": too long`);
  return Math.round(total);
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  let s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  return (h ? `${h}h` : '') + (h || m ? `${m}m` : '') + `${s}s`;
}

/** DEV as the agent takes it: MAJ:MIN or a /dev path (existence is the agent's to check). */
export function checkDevice(dev: string): string {
  parseDeviceSpec(dev, (message) => new UsageError(message));
  return dev;
}

const U64_MAX = (1n << 64n) - 1n;

/** "START-END" in 512-byte sectors, inclusive, up to 2^64-1. */
export function parseRange(s: string): { start: string; end: string } {
  const m = /^(\d+)-(\d+)$/.exec(s.trim());
  if (!m) throw new UsageError(`bad range "${s}": use START-END in 512-byte sectors, e.g. 2048-4095`);
  const [start, end] = [BigInt(m[1]), BigInt(m[2])];
  if (end > U64_MAX) throw new UsageError(`bad range "${s}": sectors go up to 2^64-1`);
  if (start > end) throw new UsageError(`bad range "${s}": start ${start} > end ${end}`);
  return { start: String(start), end: String(end) };
}

export function parseProbability(s: string): number {
  const p = Number(s);
  if (!/^\d*\.?\d+(e-?\d+)?$/i.test(s.trim()) || !(p > 0 && p <= 1)) throw new UsageError(`bad probability "${s}": must be a number in (0, 1]`);
  return p;
}

export function parseCount(s: string, what: string, min = 0): number | string {
  if (!/^\d+$/.test(s.trim())) throw new UsageError(`bad ${what} "${s}": must be a whole number`);
  const n = BigInt(s.trim());
  if (n < BigInt(min)) throw new UsageError(`bad ${what} "${s}": must be at least ${min}`);
  if (n > U64_MAX) throw new UsageError(`bad ${what} "${s}": must be at most 2^64-1`);
  return n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : String(n);
}

/** A filter's kernel event rate for Watch: 0 (none) to the agent's bound of 1000000 per second. */
export function parseEventRate(s: string, what: string): number {
  const n = parseCount(s, what);
  if (typeof n !== 'number' || n > 1_000_000) throw new UsageError(`bad ${what} "${s}": must be at most 1000000 events per second`);
  return n;
}

/** How a person spells a filter's target fields, for messages: `set`'s arguments, or a plan's keys. */
export interface TargetNames {
  /** Starts the messages about how the fields combine. */
  context: string;
  device: string;
  file: string;
  /** The file field with its argument, where a message asks for it. */
  fileArg: string;
  ranges: string;
}
export const SET_ARGS: TargetNames = { context: 'set: ', device: 'DEV', file: '--file', fileArg: '--file PATH', ranges: '--range' };

/** What a filter targets: a device or a file, exactly one; ranges only with a device (a file's extents are its ranges). */
export function filterTarget(dev: string | undefined, file: string | undefined, ranges: boolean, n: TargetNames): { device: string } | { file: string } {
  if (dev !== undefined && file !== undefined) throw new UsageError(`${n.context}give either ${n.device} or ${n.fileArg}, not both`);
  if (file === undefined) {
    if (dev === undefined) throw new UsageError(`${n.context}give ${n.device} (MAJ:MIN or a /dev path) or ${n.fileArg}`);
    return { device: checkDevice(dev) };
  }
  if (ranges) throw new UsageError(`${n.context}${n.ranges} cannot be used with ${n.file} (the file's extents are the ranges)`);
  if (!file.startsWith('/') || file.includes('\0')) throw new UsageError(`bad ${n.file} "${file}": give an absolute path on the agents' hosts`);
  return { file };
}

/** What `set` names: DEV or --file PATH. */
export function setTarget(dev: string | undefined, file: string | undefined, ranges: boolean): { device: string } | { file: string } {
  return filterTarget(dev, file, ranges, SET_ARGS);
}
