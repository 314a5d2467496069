// Where the native putFilter's time goes, by C++ symbol: `perf record -g` over a
// process that does nothing but putFilter with a 4096-range filter in a loop (its own
// pin dir and loop device), summarised by inclusive share: reading the JS spec, the
// table work (compose, layers, publication), and building the FilterInfo answer.
// Optional: without `perf` the step reports why it did not run.
//   node dist/bench/native-perf.js loop N    (what perf records)
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as native from '../native';
import { createLoop } from '../tests/helpers/loop';

export interface NativePerf {
  ran: boolean;
  reason?: string;
  calls?: number;
  msPerCall?: number;
  /** Per part of putFilter: share of the recorded process's CPU time, and ms per call. */
  parts?: { part: string; symbols: string; pct: number; msPerCall: number }[];
}

const PARTS: { part: string; symbols: RegExp; self?: boolean }[] = [
  { part: 'building the FilterInfo answer (JS objects)', symbols: /^iof::js::filter$/ },
  { part: 'reading the FilterSpec from JS', symbols: /^iof::js::filter_spec$/ },
  // the table's own work: summed by self time, as its functions call each other
  { part: 'table work (compose, layers, sort, publish)', symbols: /^(iof::(Table|Pools|build_layers)|iof::build_|std::__(introsort|insertion_sort|merge|move_merge))/, self: true },
  { part: 'garbage collection on the JS thread', symbols: /^v8::internal::Heap::CollectGarbage$/ },
];

async function loop(calls: number): Promise<void> {
  const disk = createLoop(64);
  const lock = native.lock(`/sys/fs/bpf/iofilter-bench-perf-${process.pid}`);
  const f = await native.attach({ mode: 'observe', lock, selfTest: false });
  const dev = { major: disk.major, minor: disk.minor };
  const spec: native.FilterSpec = {
    device: dev, disk: dev, offset: 0n, size: BigInt(disk.sizeSectors), ttlMs: 600_000,
    ranges: Array.from({ length: 4096 }, (_, i) => ({ start: BigInt(i * 16), end: BigInt(i * 16 + 7), ops: ['write' as const] })),
  };
  try {
    const t = process.hrtime.bigint();
    for (let i = 0; i < calls; i++) f.putFilter(spec);
    process.stdout.write(`${Number(process.hrtime.bigint() - t) / 1e6 / calls}\n`);
  } finally {
    await f.detach();
    lock.release();
    disk.detach();
  }
}

export function nativePerf(calls: number): NativePerf {
  if (spawnSync('perf', ['--version']).status !== 0) return { ran: false, reason: 'perf is not installed' };
  const data = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'iofilter-perf-')), 'perf.data');
  try {
    const rec = spawnSync('perf', ['record', '-e', 'cpu-clock', '-g', '-o', data, '--', process.execPath, __filename, 'loop', String(calls)], { encoding: 'utf8' });
    if (rec.status !== 0) return { ran: false, reason: `perf record failed: ${rec.stderr.trim().split('\n').pop()}` };
    const report = execFileSync('perf', ['report', '-i', data, '--children', '--sort', 'symbol', '-g', 'none', '--stdio'], { encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'ignore'] });
    // cpu-clock counts nanoseconds: the event count is the CPU time recorded
    const cpuNs = Number(/Event count \(approx\.\): (\d+)/.exec(report)?.[1] ?? NaN);
    const rows = report.split('\n').map((l) => /^\s+([\d.]+)%\s+([\d.]+)%\s+\[\.\]\s+(\S+)/.exec(l)).filter((m): m is RegExpExecArray => !!m)
      .map((m) => ({ children: Number(m[1]), self: Number(m[2]), sym: m[3] }));
    const parts = PARTS.map((p) => {
      const hit = rows.filter((r) => p.symbols.test(r.sym));
      const pct = hit.reduce((s, r) => s + (p.self ? r.self : r.children), 0);
      return { part: p.part, symbols: p.symbols.source, pct: Math.round(pct * 10) / 10, msPerCall: Math.round((pct / 100) * (cpuNs / 1e6 / calls) * 1000) / 1000 };
    });
    return { ran: true, calls, msPerCall: Number(rec.stdout.trim()), parts };
  } finally {
    fs.rmSync(path.dirname(data), { recursive: true, force: true });
  }
}

if (require.main === module && process.argv[2] === 'loop') {
  loop(Number(process.argv[3])).catch((e) => {
    process.stderr.write(`native-perf loop failed: ${e.stack ?? e}\n`);
    process.exit(1);
  });
}
