// npm run bench: every benchmark of bench/README.md, one section after the other, each
// with its cases interleaved round by round; writes bench/results/*.json (each with the
// machine, and the guest's kernel for what ran in the VM) and bench/results/summary.txt,
// prints the summary with the tables, the spreads and each goal met or not.
// Needs root (BPF, loop devices, QEMU). BENCH_QUICK=1 shortens every section (a smoke
// run, not figures); IOFILTER_KERNEL picks the VM's kernel (default distro-6.1).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runControl } from './control';
import { DatapathOptions, DatapathRun, runDatapath } from './datapath';
import { DmBenchResult, dmLines } from './dm';
import { runFanout } from './fanout';
import type { FirstFailSample } from './first-fail';
import { nativePerf } from './native-perf';
import { runOnDemand } from './ondemand';
import { runProfile } from './profile';
import { fanoutGoals, fanoutTable } from './fanout-report';
import { controlGoals, controlTable, datapathGoals, datapathTable, firstFailGoal, firstFailLines, Goal, onDemandGoal, onDemandLines, profileTable } from './report';
import { machine, writeResult } from './stats';

const ROOT = path.join(__dirname, '..', '..');
const OUT = path.join(ROOT, 'bench', 'results');
const quick = process.env.BENCH_QUICK === '1';
const kernel = process.env.IOFILTER_KERNEL || 'distro-6.1'; // tests/vm/run's default
const log = (s: string) => process.stderr.write(`  ${s}\n`);
const section = (s: string) => process.stderr.write(`${s}\n`);

const save = (name: string, data: object) => writeResult(path.join(OUT, `${name}.json`), data);

/** Runs `node dist/bench/SCRIPT ARGS... OUT` in the VM; returns what it wrote to OUT. */
function inVm<T>(script: string, args: string[]): T {
  const out = `/var/tmp/iofilter-bench-${path.basename(script, '.js')}-${process.pid}.json`;
  const r = spawnSync(path.join(ROOT, 'tests', 'vm', 'run'), ['node', `dist/bench/${script}`, ...args, out], {
    cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, IOFILTER_KERNEL: kernel, IOFILTER_VM_TIMEOUT: '3600' },
  });
  if (r.status !== 0) throw new Error(`${script} in the VM failed with ${r.status}`);
  try {
    return JSON.parse(fs.readFileSync(out, 'utf8'));
  } finally {
    fs.rmSync(out, { force: true });
  }
}

async function main() {
  if (process.getuid?.() !== 0) throw new Error('benchmarks need root (BPF, loop devices, QEMU)');
  fs.mkdirSync(OUT, { recursive: true });
  const m = machine();
  const loadStart = os.loadavg();
  const started = Date.now();
  const summary: string[] = [`iofilter benchmarks on ${m.cpus}x ${m.cpu}, ${m.memGiB} GiB, host kernel ${m.kernel}, node ${m.node}${quick ? ' (BENCH_QUICK: a smoke run, not figures)' : ''}`];
  const goals: Goal[] = [];

  section('data path on the host (observe)');
  const host = await runDatapath({ mode: 'observe', anchors: false, iopsRounds: quick ? 3 : 7, timeRounds: quick ? 2 : 7, seconds: quick ? 1 : 3, log });
  save('datapath-host', host);
  summary.push('', ...datapathTable('Data path, host (observe mode; fio 4k randread io_uring QD32 --blockalign=8k, 256 MiB tmpfs loop device):', host, true));
  goals.push(...datapathGoals(host));
  const idleGoal = onDemandGoal(host);
  if (idleGoal) goals.push(idleGoal);

  section('control plane against a local agent');
  const ctl = await runControl({ rounds: quick ? 2 : 7, calls: quick ? 200 : 1000, log });
  save('control', { results: ctl });
  summary.push('', ...controlTable(ctl));
  goals.push(...controlGoals(ctl));

  section('attach on demand against a local agent');
  const od = await runOnDemand({ samples: quick ? 3 : 10, log });
  save('ondemand', od);
  summary.push('', ...onDemandLines(od));

  section('where a SetFilter goes: profiles and in-process timings');
  const prof = await runProfile({ calls: quick ? 100 : 500, log });
  const np = nativePerf(quick ? 50 : 200);
  save('profile', { ...prof, nativePerf: np });
  summary.push('', ...profileTable(prof, np, ctl));

  section('fan-out: iofilterctl set and status across N endpoints on loopback');
  const foLoad = os.loadavg();
  const fo = await runFanout({ sizes: [10, 100, 1000, 10_000], sweep: quick ? [] : [64, 1024], sweepCommands: ['set'], tlsSizes: quick ? [1000] : [1000, 10_000], rounds: quick ? 1 : 2, log });
  save('fanout', { loadStart: foLoad, loadEnd: os.loadavg(), results: fo });
  summary.push('', ...fanoutTable(fo, foLoad, os.loadavg()));
  goals.push(...fanoutGoals(fo));

  // the VM last: under TCG its figures are ratios with wide spreads anyway
  const vm: Record<string, DatapathRun | { skipped: string }> = {};
  const vmCases = ['none', 'empty', 'nofilters', 'elsewhere', 'r1', 'r4096', 'match', 'fmr0', 'flakey'];
  for (const mode of ['fmod_ret', 'kprobe', 'observe'] as const) {
    section(`data path in the VM (kernel ${kernel}, ${mode}; TCG: ratios and spreads only)`);
    const opts: Omit<DatapathOptions, 'log'> = { mode, anchors: true, only: vmCases, iopsRounds: quick ? 2 : 7, timeRounds: quick ? 1 : 3, seconds: quick ? 1 : 2 };
    try {
      const run = inVm<DatapathRun>('datapath.js', [JSON.stringify(opts)]);
      vm[mode] = run;
      summary.push('', ...datapathTable(`Data path, VM under TCG, ${mode}:`, run, true));
    } catch (e) {
      vm[mode] = { skipped: (e as Error).message };
      summary.push('', `Data path, VM under TCG, ${mode}: not measured (${(e as Error).message})`);
    }
  }
  save('datapath-vm', { kernel, modes: vm });

  section(`SetFilter -> first EIO, in the VM (kernel ${kernel}, fmod_ret)`);
  const writer = path.join(ROOT, 'dist', 'bench', 'ff-writer');
  const cc = spawnSync('cc', ['-O2', '-Wall', '-o', writer, path.join(ROOT, 'bench', 'ff-writer.c')], { stdio: 'inherit' });
  if (cc.status !== 0) throw new Error('cannot compile bench/ff-writer.c');
  try {
    const ff = inVm<{ machine: { kernel: string }; samples: FirstFailSample[] }>('first-fail.js', [writer, String(quick ? 3 : 10)]);
    save('first-fail', ff);
    summary.push('', ...firstFailLines(ff.machine.kernel, ff.samples));
    goals.push(firstFailGoal(ff.samples));
  } catch (e) {
    summary.push('', `SetFilter -> first EIO: not measured (${(e as Error).message})`);
  }

  section(`dm backend: SetFilter/DeleteFilter latency and fio during table swaps, in the VM (kernel ${kernel})`);
  try {
    const dm = inVm<DmBenchResult>('dm.js', [JSON.stringify({ cycles: quick ? 5 : 20 })]);
    save('dm', dm);
    summary.push('', ...dmLines(dm));
  } catch (e) {
    summary.push('', `dm backend: not measured (${(e as Error).message})`);
  }

  const loadEnd = os.loadavg();
  const la = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
  summary.push('', 'Goals:', ...goals.map((g) => `  ${g.text}`));
  summary.push('', `Load average (1/5/15 min) at start ${la(loadStart)}, at end ${la(loadEnd)}; ${Math.round((Date.now() - started) / 60000)} min.`);
  const text = summary.join('\n') + '\n';
  fs.writeFileSync(path.join(OUT, 'summary.txt'), text);
  process.stdout.write(text);
}

main().catch((e) => {
  process.stderr.write(`bench failed: ${e.stack ?? e}\n`);
  process.exit(1);
});
