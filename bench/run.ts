// npm run bench: every benchmark, side by side, interleaved by round; writes
// bench/results/*.json and prints a summary with medians, ratios and the goals.
// Needs root (BPF, loop devices, QEMU). BENCH_QUICK=1 shortens every section.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CaseResult, runDatapath } from './datapath';
import { LatencyResult, runControl } from './control';

const ROOT = path.join(__dirname, '..', '..');
const OUT = path.join(ROOT, 'bench', 'results');
const quick = process.env.BENCH_QUICK === '1';
const log = (s: string) => process.stderr.write(`  ${s}\n`);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};
const fmt = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '-');

function save(name: string, data: unknown) {
  fs.mkdirSync(OUT, { recursive: true });
  fs.writeFileSync(path.join(OUT, `${name}.json`), JSON.stringify({ machine: machine(), date: new Date().toISOString(), data }, null, 1));
}

function machine() {
  return { kernel: os.release(), cpus: os.cpus().length, cpu: os.cpus()[0]?.model, memGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version };
}

function datapathTable(title: string, rs: CaseResult[]): string[] {
  const base = median(rs[0].iops);
  const empty = median(rs[1].nsPerIo);
  const lines = [title, '  case                                                     IOPS   xIOPS  ns/IO(prog)  x empty'];
  for (const r of rs) {
    const ns = median(r.nsPerIo);
    lines.push(`  ${r.name.padEnd(52)} ${fmt(median(r.iops), 0).padStart(9)}  ${fmt(median(r.iops) / base, 3)}  ${fmt(ns, 1).padStart(11)}  ${r.nsPerIo.length && Number.isFinite(empty) ? fmt(ns / empty, 2) : '-'}`);
  }
  return lines;
}

/** Runs the data-path benchmark in the VM for one mode; returns its results. */
function datapathInVm(mode: string, hook: string, rounds: number, seconds: number): CaseResult[] {
  const out = `/var/tmp/iofilter-bench-${mode}-${process.pid}.json`;
  const r = spawnSync(path.join(ROOT, 'tests', 'vm', 'run'), ['node', 'dist/bench/datapath.js', mode, hook, String(rounds), String(seconds), out], {
    cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, IOFILTER_VM_TIMEOUT: '3600' },
  });
  if (r.status !== 0) throw new Error(`VM data-path bench (${mode}) failed with ${r.status}`);
  const res = JSON.parse(fs.readFileSync(out, 'utf8'));
  fs.rmSync(out);
  return res;
}

async function fanout(sizes: number[], rounds: number): Promise<{ endpoints: number; wallMs: number[]; rssMiB: number[]; ok: number[] }[]> {
  // endpoint processes of at most 250 agents each ("several endpoints share a process")
  const procs: ReturnType<typeof spawn>[] = [];
  const addrs: string[] = [];
  const max = Math.max(...sizes);
  for (let left = max; left > 0; left -= 250) {
    const n = Math.min(250, left);
    const p = spawn(process.execPath, [path.join(__dirname, 'endpoints.js'), String(n)], { stdio: ['ignore', 'pipe', 'inherit'] });
    procs.push(p);
    await new Promise<void>((resolve, reject) => {
      let buf = '';
      p.stdout!.on('data', (d) => {
        buf += d;
        if (buf.includes('ready\n')) {
          addrs.push(...buf.split('\n').filter((l) => l && l !== 'ready'));
          resolve();
        }
      });
      p.once('exit', (c) => reject(new Error(`endpoint process exited ${c}`)));
    });
  }
  const results = sizes.map((endpoints) => ({ endpoints, wallMs: [] as number[], rssMiB: [] as number[], ok: [] as number[] }));
  try {
    for (let round = 0; round < rounds; round++) {
      for (const r of results) {
        const hostsFile = path.join(os.tmpdir(), `iofilter-fanout-${process.pid}-${r.endpoints}`);
        fs.writeFileSync(hostsFile, addrs.slice(0, r.endpoints).join('\n') + '\n');
        const t = process.hrtime.bigint();
        const run = spawnSync('/usr/bin/time', ['-f', '%M', process.execPath, path.join(ROOT, 'dist', 'client', 'cli.js'), '--hosts-file', hostsFile, '--concurrency', '256', '--json', 'set', '7:0', '--write', '--ttl', '1m'], { encoding: 'utf8', maxBuffer: 256 << 20 });
        const wall = Number(process.hrtime.bigint() - t) / 1e6;
        fs.rmSync(hostsFile);
        const rssKiB = Number(run.stderr.trim().split('\n').pop());
        const ok = run.stdout.trim().split('\n').filter((l) => JSON.parse(l).ok).length;
        r.wallMs.push(wall);
        r.rssMiB.push(rssKiB / 1024);
        r.ok.push(ok);
        log(`round ${round + 1} set on ${r.endpoints} endpoints: ${wall.toFixed(0)} ms, ${(rssKiB / 1024).toFixed(0)} MiB peak RSS, ${ok} ok, exit ${run.status}`);
      }
    }
  } finally {
    procs.forEach((p) => p.kill());
  }
  return results;
}

async function main() {
  if (process.getuid?.() !== 0) throw new Error('benchmarks need root (BPF, loop devices, QEMU)');
  const rounds = quick ? 2 : 3;
  const summary: string[] = [`iofilter benchmarks on ${machine().cpus}x ${machine().cpu}, kernel ${machine().kernel}, ${machine().node}${quick ? ' (quick)' : ''}`];
  const goals: string[] = [];

  process.stderr.write('data path on the host (observe, tp_btf)\n');
  const host = await runDatapath({ mode: 'observe', hook: 'tp_btf/block_bio_queue', anchors: false, rounds, seconds: quick ? 2 : 5, log });
  save('datapath-host', host);
  summary.push('', ...datapathTable('Data path, host (observe mode; fio 4k randread io_uring QD32, tmpfs loop device):', host));
  const emptyNs = median(host[1].nsPerIo);
  const noFilterNs = median(host[3].nsPerIo);
  goals.push(`program cost per I/O with no filter for the device <= 1.5x the empty program: ${fmt(noFilterNs, 1)} ns vs ${fmt(emptyNs, 1)} ns = ${fmt(noFilterNs / emptyNs)}x -> ${noFilterNs / emptyNs <= 1.5 ? 'MET' : 'NOT MET'}`);
  const iopsRatio = median(host[3].iops) / median(host[0].iops);
  goals.push(`IOPS with iofilter attached (filters elsewhere) >= 0.97x no program: ${fmt(iopsRatio, 3)}x -> ${iopsRatio >= 0.97 ? 'MET' : 'NOT MET'}`);

  const vm: Record<string, CaseResult[]> = {};
  for (const [mode, hook] of [['fmod_ret', 'fmod_ret/should_fail_bio'], ['kprobe', 'kprobe/should_fail_bio'], ['observe', 'fentry/should_fail_bio']]) {
    process.stderr.write(`data path in the VM (${mode}; TCG: only ratios mean anything)\n`);
    vm[mode] = datapathInVm(mode, hook, rounds, quick ? 2 : 3);
    summary.push('', ...datapathTable(`Data path, VM under TCG, ${mode} (ratios only):`, vm[mode]));
  }
  save('datapath-vm', vm);

  process.stderr.write('control plane against a local agent\n');
  const ctl: LatencyResult[] = await runControl({ rounds, callsPerRun: quick ? 300 : 2000, log });
  save('control', ctl);
  summary.push('', 'Control plane, local agent (observe mode):', '  rpc        clients   p50 ms   p99 ms   calls/s');
  for (const r of ctl) summary.push(`  ${r.rpc.padEnd(10)} ${String(r.clients).padStart(7)}  ${fmt(median(r.p50Ms)).padStart(7)}  ${fmt(median(r.p99Ms)).padStart(7)}  ${fmt(median(r.perSecond), 0).padStart(8)}`);
  const setP99 = Math.max(...ctl.filter((r) => r.rpc === 'SetFilter').map((r) => median(r.p99Ms)));
  goals.push(`SetFilter p99 under 5 ms locally: worst of 1 and 16 clients ${fmt(setP99)} ms -> ${setP99 < 5 ? 'MET' : 'NOT MET'}`);

  process.stderr.write('SetFilter return -> first failing I/O, in the VM (fmod_ret)\n');
  const ffOut = `/var/tmp/iofilter-first-fail-${process.pid}.json`;
  const ff = spawnSync(path.join(ROOT, 'tests', 'vm', 'run'), ['node', 'dist/bench/first-fail.js', ffOut], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  if (ff.status === 0) {
    const samples: { firstIoFailed: boolean; msToEio: number }[] = JSON.parse(fs.readFileSync(ffOut, 'utf8'));
    fs.rmSync(ffOut);
    save('first-fail', samples);
    summary.push('', `SetFilter return -> first failing I/O (VM, fmod_ret, TCG): first I/O failed in ${samples.filter((s) => s.firstIoFailed).length}/${samples.length}; median ${fmt(median(samples.map((s) => s.msToEio)), 1)} ms until dd saw EIO`);
  }

  process.stderr.write('fan-out: iofilterctl set across N endpoints on loopback\n');
  const fo = await fanout([10, 100, 1000], rounds);
  save('fanout', fo);
  summary.push('', 'Fan-out, `iofilterctl set` (concurrency 256):', '  endpoints   wall ms   peak RSS MiB   ok');
  for (const r of fo) summary.push(`  ${String(r.endpoints).padStart(9)}  ${fmt(median(r.wallMs), 0).padStart(8)}  ${fmt(median(r.rssMiB), 0).padStart(13)}   ${Math.min(...r.ok)}/${r.endpoints}`);
  const k = fo.find((r) => r.endpoints === 1000)!;
  goals.push(`set on 1000 endpoints under 2 s with the client under 300 MB RSS: ${fmt(median(k.wallMs), 0)} ms, ${fmt(median(k.rssMiB), 0)} MiB -> ${median(k.wallMs) < 2000 && median(k.rssMiB) < 300 ? 'MET' : 'NOT MET'}`);

  summary.push('', 'Goals:', ...goals.map((g) => `  ${g}`));
  const text = summary.join('\n') + '\n';
  fs.writeFileSync(path.join(OUT, 'summary.txt'), text);
  process.stdout.write(text);
}

main().catch((e) => {
  process.stderr.write(`bench failed: ${e.stack ?? e}\n`);
  process.exit(1);
});
