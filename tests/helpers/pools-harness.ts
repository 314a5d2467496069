// tests/unit/pools_harness.cc, built against the real native/pools.cc (and, for the
// host tier, tests/host/grace_hold.bpf.c, a BPF program that stays running a while).
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ROOT } from './common';

/** Built under `base` (a VM guest sees the host's /var/tmp, not its /tmp). */
export function buildPoolsHarness(base = os.tmpdir()): string {
  const out = path.join(fs.mkdtempSync(path.join(base, 'iof-pools-')), 'harness');
  execFileSync('g++', ['-O2', '-Wall', '-Werror', '-std=c++17', '-pthread', '-I', path.join(ROOT, 'native'),
    path.join(ROOT, 'tests', 'unit', 'pools_harness.cc'), path.join(ROOT, 'native', 'pools.cc'),
    path.join(ROOT, 'native', 'errors.cc'), '-lbpf', '-o', out]);
  return out;
}

export function buildHoldProgram(base = os.tmpdir()): string {
  const out = path.join(fs.mkdtempSync(path.join(base, 'iof-hold-')), 'hold.bpf.o');
  execFileSync('clang', ['-g', '-O2', '-target', 'bpf', '-mcpu=v3', `-I/usr/include/${execFileSync('gcc', ['-print-multiarch'], { encoding: 'utf8' }).trim()}`,
    '-c', path.join(ROOT, 'tests', 'host', 'grace_hold.bpf.c'), '-o', out]);
  return out;
}

/** Parses the harness's `inflight` line. */
export function parseInflight(line: string) {
  const m = /^ok inflight done_after=(\d+) spins_at_return=(\d+) run=(-?\d+) grace_ms=([\d.]+) attempts=(\d+) hook=(\S+)$/.exec(line);
  if (!m) throw new Error(`not an inflight result: ${line}`);
  return { doneAfter: Number(m[1]), spins: Number(m[2]), run: Number(m[3]), graceMs: Number(m[4]), attempts: Number(m[5]), hook: m[6] };
}

/** Runs one scenario: its exit status and output lines. */
export function runHarness(harness: string, ...args: string[]): { status: number | null; lines: string[]; stderr: string } {
  const r = spawnSync(harness, args, { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, lines: r.stdout.trim().split('\n').filter(Boolean), stderr: r.stderr };
}
