// Inside the VM (fmod_ret): SetFilter's guarantee, measured on the filter and not on a
// process start. A writer (ff-writer.c) issues 4 KiB O_DIRECT writes in a loop from
// before the call and logs each one's CLOCK_MONOTONIC start, end and result; Node's
// process.hrtime reads the same clock. Per sample: how long from SetFilter's return to
// the first EIO the writer logs, and how many writes submitted after the return still
// succeeded (must be 0: every I/O submitted after the return is judged by the new filter).
// A first EIO before the return (negative time) means the filter was in force while the
// call was still on its way back, which the guarantee allows.
//   node dist/bench/first-fail.js WRITER SAMPLES OUT.json
import { spawn } from 'node:child_process';
import pino from 'pino';
import { resolveConfig } from '../agent/config';
import { createAgent } from '../agent/server';
import { IoFilterClient } from '../client';
import { createLoop } from '../tests/helpers/loop';
import { writeResult } from './stats';

export interface FirstFailSample {
  setFilterMs: number; // the call, as the client saw it
  msToFirstEio: number; // from the return to the end of the first failed write (< 0: before the return)
  msCallToFirstEio: number; // from the call to the end of the first failed write
  writesAfterReturn: number; // writes whose start was after the return
  okAfterReturn: number; // of those, how many succeeded (must be 0)
  /** The write in flight when the call returned (started before, ended after), if any: its result. */
  inFlightResult: number | null;
  medianWriteUs: number; // the writer's pace before the filter
}

interface Rec {
  start: bigint;
  end: bigint;
  result: number;
}

const EIO = -5;

function runWriter(writer: string, dev: string): { ready: Promise<void>; stop: () => Promise<Rec[]> } {
  const p = spawn(writer, [dev], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.setEncoding('utf8').on('data', (d) => (out += d));
  const ready = new Promise<void>((resolve, reject) => {
    p.stderr.setEncoding('utf8').on('data', (d) => {
      err += d;
      if (err.includes('ready\n')) resolve();
    });
    p.once('exit', (code) => reject(new Error(`writer exited ${code} before its first write: ${err}`)));
  });
  const done = new Promise<Rec[]>((resolve, reject) =>
    p.once('close', (code) => {
      if (code !== 0) return reject(new Error(`writer exited ${code}: ${err}`));
      resolve(out.trim().split('\n').map((l) => {
        const [s, e, r] = l.split(' ');
        return { start: BigInt(s), end: BigInt(e), result: Number(r) };
      }));
    }),
  );
  return { ready, stop: () => (p.kill('SIGTERM'), done) };
}

async function main() {
  const [writer, samplesArg, out] = process.argv.slice(2);
  const disk = createLoop(16);
  const cfg = resolveConfig({ listen: '127.0.0.1:0', attach: 'fmod_ret', pinDir: `/sys/fs/bpf/iofilter-first-fail-${process.pid}` });
  const agent = await createAgent(cfg, pino({ level: 'warn' }));
  const client = new IoFilterClient(agent.address, { timeoutMs: 60_000 });
  const samples: FirstFailSample[] = [];
  try {
    for (let i = 0; i < Number(samplesArg); i++) {
      const w = runWriter(writer, disk.path);
      await w.ready;
      await new Promise((r) => setTimeout(r, Math.random() * 20)); // returns land anywhere in a write
      const call = process.hrtime.bigint();
      await client.setFilter({ device: disk.path, wholeDeviceOps: ['OP_WRITE'], ttlMs: 60_000 });
      const ret = process.hrtime.bigint();
      await new Promise((r) => setTimeout(r, 200)); // the writer goes on under the new filter
      const recs = await w.stop();
      await client.deleteFilter(disk.path);
      const after = recs.filter((r) => r.start > ret);
      const first = recs.find((r) => r.result === EIO);
      const inFlight = recs.find((r) => r.start <= ret && r.end >= ret);
      const before = recs.filter((r) => r.end < call).map((r) => Number(r.end - r.start) / 1e3).sort((a, b) => a - b);
      samples.push({
        setFilterMs: Number(ret - call) / 1e6,
        msToFirstEio: first ? Number(first.end - ret) / 1e6 : NaN,
        msCallToFirstEio: first ? Number(first.end - call) / 1e6 : NaN,
        writesAfterReturn: after.length,
        okAfterReturn: after.filter((r) => r.result === 0).length,
        inFlightResult: inFlight ? inFlight.result : null,
        medianWriteUs: before[Math.floor(before.length / 2)] ?? NaN,
      });
      process.stderr.write(`  sample ${i + 1}: ${JSON.stringify(samples.at(-1))}\n`);
    }
  } finally {
    await client.detach().catch(() => undefined);
    client.close();
    await agent.stop(1000);
    disk.detach();
  }
  writeResult(out, { mode: 'fmod_ret', samples });
}

main().catch((e) => {
  process.stderr.write(`first-fail bench failed: ${e.stack ?? e}\n`);
  process.exit(1);
});
