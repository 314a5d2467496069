// What every benchmark shares: medians with their min-max spread, percentiles, the
// "is this difference real" rule, and a description of the machine a figure came from
// (run inside the VM, it describes the guest: its kernel, not the host's).
import * as fs from 'node:fs';
import * as os from 'node:os';

export function median(xs: number[]): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Nearest-rank percentile (p in 0..100). */
export function percentile(xs: number[], p: number): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function spread(xs: number[]): Spread {
  const s = xs.filter(Number.isFinite);
  return { median: median(s), min: s.length ? Math.min(...s) : NaN, max: s.length ? Math.max(...s) : NaN, n: s.length };
}

/**
 * A difference between two sets of rounds counts as real only when their min-max
 * spreads do not overlap: under TCG (and on a busy host) anything less is noise.
 */
export function differs(a: number[], b: number[]): boolean {
  const x = spread(a);
  const y = spread(b);
  if (!x.n || !y.n) return false;
  return x.min > y.max || y.min > x.max;
}

/** Per-round ratios a[i] / b[i] of two interleaved series (same round, same conditions). */
export function pairedRatios(a: number[], b: number[]): number[] {
  const n = Math.min(a.length, b.length);
  return Array.from({ length: n }, (_, i) => a[i] / b[i]).filter(Number.isFinite);
}

export const fmt = (x: number, digits = 2): string => (Number.isFinite(x) ? x.toFixed(digits) : '-');

/** "123.4 [120.1-130.9]" */
export function fmtSpread(xs: number[], digits = 1): string {
  const s = spread(xs);
  return s.n ? `${fmt(s.median, digits)} [${fmt(s.min, digits)}-${fmt(s.max, digits)}]` : '-';
}

export interface Machine {
  /** `uname -r` where the benchmark ran: the guest's kernel inside the VM. */
  kernel: string;
  cpus: number;
  cpu: string;
  memGiB: number;
  node: string;
  /** True when this ran inside the project's QEMU/TCG VM (tests/vm/run). */
  vm: boolean;
  loadavg: number[];
}

export function machine(): Machine {
  return {
    kernel: os.release(),
    cpus: os.cpus().length,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    vm: process.env.IOFILTER_IN_VM === '1',
    loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

/** Writes `{ machine, date, ...data }` as pretty JSON. */
export function writeResult(file: string, data: object): void {
  fs.writeFileSync(file, JSON.stringify({ machine: machine(), date: new Date().toISOString(), ...data }, null, 1) + '\n');
}
