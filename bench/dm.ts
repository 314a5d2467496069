// Inside the VM: the dm backend's cost. A dm-linear device (two 16 MiB segments over two
// loop devices, as an LV over two PVs), a real agent in this process (attach none, so
// auto picks dm), a client over loopback. Three phases, one after the other:
//  1. idle: CYCLES set/delete cycles of an error range (sectors 1000-1999), nothing else
//     running: SetFilter and DeleteFilter latency as the client sees it;
//  2. fio alone for D seconds: 4 KiB direct random reads and writes (psync, QD 1, rate
//     limited so fio does not starve the agent of the guest's CPU) on 4-28 MiB of the
//     device, far from the faulted range: its completion latencies without swaps;
//  3. the same fio for D seconds while set/delete cycles run back to back (as many as
//     fit): SetFilter/DeleteFilter latency under load, and fio's latencies during swaps.
// D is chosen from phase 1 (3x its time, at least 15 s) so that phase 3 holds about CYCLES cycles. fio's JSON gives each
// run's clat max and p99, and whether any I/O failed; its per-I/O latency log gives the
// longest gap between two completions (the longest pause fio saw).
//   node dist/bench/dm.js '{"cycles":20,"maxSeconds":600}' OUT.json
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import pino from 'pino';
import { resolveConfig } from '../agent/config';
import { createAgent } from '../agent/server';
import { IoFilterClient } from '../client';
import { createLoop } from '../tests/helpers/loop';
import { machine, percentile, writeResult } from './stats';

const NAME = 'iof-bench';
const DEV = `/dev/mapper/${NAME}`;
const SEG = 32768;
const RANGE = { start: 1000, end: 1999, ops: ['OP_READ', 'OP_WRITE', 'OP_DISCARD', 'OP_WRITE_ZEROES'] as const };
const dmsetup = (args: string[], input?: string) => execFileSync('dmsetup', ['--noudevsync', ...args], { input, env: { ...process.env, DM_DISABLE_UDEV: '1' }, encoding: 'utf8' });

export interface Latencies {
  setMs: number[];
  deleteMs: number[];
}

export interface FioRun {
  seconds: number;
  ios: number;
  /** fio's job error (0: none; 5: EIO) and the I/Os it counted as failed. */
  error: number;
  clatMaxMs: number;
  /** The same from fio's JSON (a check on the log's units). */
  jsonClatMaxMs: number;
  clatP99Ms: number;
  clatP50Ms: number;
  /** The longest time between two consecutive completions, from the per-I/O log. */
  maxGapMs: number;
}

export interface DmBenchResult {
  machine: ReturnType<typeof machine>;
  loadavg: number[];
  idle: Latencies;
  underLoad: Latencies;
  fioAlone: FioRun;
  fioSwaps: FioRun;
}

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

async function cycle(client: IoFilterClient, into: Latencies): Promise<void> {
  let t = process.hrtime.bigint();
  await client.setFilter({ device: DEV, ranges: [{ ...RANGE, ops: [...RANGE.ops] }], ttlMs: 600_000 });
  into.setMs.push(ms(t));
  t = process.hrtime.bigint();
  const r = await client.deleteFilter(DEV);
  into.deleteMs.push(ms(t));
  if (!r.existed) throw new Error('DeleteFilter found no filter');
}

/** fio for `seconds`, while `during` runs; its JSON and latency log. */
async function fio(seconds: number, tag: string, during: () => Promise<void>): Promise<FioRun> {
  const prefix = `/tmp/iof-bench-dm-${tag}`;
  const args = [
    '--name=steady', `--filename=${DEV}`, '--direct=1', '--rw=randrw', '--bs=4k', '--ioengine=psync', '--iodepth=1',
    '--offset=4M', '--size=24M', '--rate_iops=100,100', '--time_based', `--runtime=${seconds}`, '--randseed=42',
    `--write_lat_log=${prefix}`, '--log_avg_msec=0', '--output-format=json',
  ];
  const p = spawn('fio', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.setEncoding('utf8').on('data', (d) => (out += d));
  p.stderr.setEncoding('utf8').on('data', (d) => (err += d));
  const exited = new Promise<number>((resolve) => p.once('close', (c) => resolve(c ?? -1)));
  await new Promise((r) => setTimeout(r, 1000)); // fio under way
  await during();
  const code = await exited;
  const json = JSON.parse(out.slice(out.indexOf('{')));
  const job = json.jobs[0];
  // clat log: "time_ms, clat_ns, ddir, bs, offset[, prio]" per I/O (reads and writes in one file per job)
  const all = fs.readdirSync('/tmp').filter((f) => f.startsWith(`iof-bench-dm-${tag}_`)).map((f) => `/tmp/${f}`);
  const logs = all.filter((f) => f.includes('_clat.'));
  if (!logs.length) throw new Error(`fio wrote no latency log (exit ${code}): ${err}`);
  const done = logs.flatMap((f) => fs.readFileSync(f, 'utf8').trim().split('\n')).map((l) => l.split(',').map((x) => Number(x.trim())));
  for (const f of all) fs.rmSync(f);
  const completions = done.map((x) => x[0]).sort((a, b) => a - b);
  let maxGap = 0;
  for (let i = 1; i < completions.length; i++) maxGap = Math.max(maxGap, completions[i] - completions[i - 1]);
  const clat = done.map((x) => x[1] / 1e6);
  return {
    seconds,
    ios: done.length,
    error: code === 0 ? Number(job.error ?? 0) : Number(job.error || code),
    clatMaxMs: Math.max(...clat),
    jsonClatMaxMs: Math.max(Number(job.read?.clat_ns?.max ?? 0), Number(job.write?.clat_ns?.max ?? 0)) / 1e6,
    clatP99Ms: percentile(clat, 99),
    clatP50Ms: percentile(clat, 50),
    maxGapMs: maxGap,
  };
}

async function main() {
  const [optsArg, out] = process.argv.slice(2);
  const opts = JSON.parse(optsArg || '{}');
  const cycles = Number(opts.cycles ?? 20);
  const maxSeconds = Number(opts.maxSeconds ?? 600); // a loaded TCG guest can take 15 s a cycle
  const a = createLoop(16);
  const b = createLoop(16);
  const devno = (p: string) => fs.readFileSync(`/sys/class/block/${p.slice(5)}/dev`, 'utf8').trim();
  dmsetup(['create', NAME], `0 ${SEG} linear ${devno(a.path)} 0\n${SEG} ${SEG} linear ${devno(b.path)} 0\n`);
  const original = dmsetup(['table', NAME]);
  const stateDir = `/tmp/iof-bench-dm-state-${process.pid}`;
  const cfg = resolveConfig({ listen: '127.0.0.1:0', attach: 'none', pinDir: `/sys/fs/bpf/iofilter-bench-dm-${process.pid}`, stateDir });
  const agent = await createAgent(cfg, pino({ level: 'warn' }));
  const client = new IoFilterClient(agent.address, { timeoutMs: 120_000 });
  try {
    const idle: Latencies = { setMs: [], deleteMs: [] };
    await cycle(client, { setMs: [], deleteMs: [] }); // warm-up, not counted
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < cycles; i++) await cycle(client, idle);
    const idleMs = ms(t0);
    const seconds = Math.min(maxSeconds, Math.max(15, Math.ceil((idleMs * 3) / 1000))); // room for CYCLES cycles under load, which are slower
    process.stderr.write(`  idle: ${cycles} cycles in ${Math.round(idleMs)} ms; fio runs ${seconds} s per phase\n`);
    const fioAlone = await fio(seconds, 'alone', async () => undefined);
    const underLoad: Latencies = { setMs: [], deleteMs: [] };
    const end = Date.now() + (seconds - 2) * 1000;
    const fioSwaps = await fio(seconds, 'swaps', async () => {
      while (Date.now() < end) await cycle(client, underLoad); // only while fio runs: n says how many fitted
    });
    if (dmsetup(['table', NAME]) !== original) throw new Error('the table is not the original after the cycles');
    const result: DmBenchResult = { machine: machine(), loadavg: fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number), idle, underLoad, fioAlone, fioSwaps };
    writeResult(out, result);
    for (const line of dmLines(result)) process.stderr.write(`  ${line}\n`);
  } finally {
    await client.clearFilters().catch(() => undefined);
    client.close();
    await agent.stop(1000);
    dmsetup(['remove', NAME]);
    a.detach();
    b.detach();
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
}

const f1 = (x: number) => x.toFixed(1);
const pct = (xs: number[]) => `p50 ${f1(percentile(xs, 50))}  p99 ${f1(percentile(xs, 99))}  max ${f1(Math.max(...xs))} ms (n=${xs.length})`;

/** The summary lines of a run. */
export function dmLines(r: DmBenchResult): string[] {
  const fioLine = (what: string, f: FioRun) =>
    `${what}: ${f.ios} I/Os in ${f.seconds} s, clat p50 ${f1(f.clatP50Ms)} p99 ${f1(f.clatP99Ms)} max ${f1(f.clatMaxMs)} ms, longest gap between completions ${f1(f.maxGapMs)} ms, fio error ${f.error}`;
  return [
    `dm backend in the VM (guest kernel ${r.machine.kernel}, guest load ${r.loadavg.join(' ')}):`,
    `  SetFilter, idle:       ${pct(r.idle.setMs)}`,
    `  DeleteFilter, idle:    ${pct(r.idle.deleteMs)}`,
    `  SetFilter, under fio:  ${pct(r.underLoad.setMs)}`,
    `  DeleteFilter, under fio: ${pct(r.underLoad.deleteMs)}`,
    `  ${fioLine('fio alone', r.fioAlone)}`,
    `  ${fioLine('fio during swaps', r.fioSwaps)}`,
    `  during swaps / alone: clat max x${f1(r.fioSwaps.clatMaxMs / r.fioAlone.clatMaxMs)}, clat p99 x${f1(r.fioSwaps.clatP99Ms / r.fioAlone.clatP99Ms)}, longest gap x${f1(r.fioSwaps.maxGapMs / r.fioAlone.maxGapMs)}`,
  ];
}

if (require.main === module)
  main().catch((e) => {
    process.stderr.write(`dm bench failed: ${e.stack ?? e}\n`);
    process.exit(1);
  });
