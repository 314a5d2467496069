// Control-plane latency against a real local agent (its own process, observe mode):
// SetFilter with a 1-range and with a 4096-range filter and Status, with one client,
// and SetFilter and Status with 16 concurrent clients, in interleaved rounds. The
// 4096-range filter is sent three ways in the same rounds (issue 25): as Range messages
// with the FULL answer (every range echoed back: what every SetFilter did before views),
// as Range messages with the default BASIC answer, and as packed_ranges with the BASIC
// answer (what iofilterctl sends from 64 ranges on). Reports
// per-round p50/p99 (median and spread over rounds), the p99 of all calls pooled, and
// when the slow calls (> 5 ms) happened, to tell periodic stalls from random ones.
// Every combination first runs once untimed: the first calls of a fresh agent and
// client are slower (V8 compiles the paths they take) and are reported on their own.
import * as fs from 'node:fs';
import { compactRanges, IoFilterClient } from '../client';
import type { SetFilterRequest } from '../proto/gen/iofilter/v1/SetFilterRequest';
import { startAgent } from '../tests/helpers/agent';
import { createLoop, LoopDevice } from '../tests/helpers/loop';
import { machine, percentile } from './stats';

/** How a SetFilter's ranges travel and what its answer carries. */
export type SetForm = 'full' | 'basic' | 'packed';

export interface LatencyResult {
  key: string;
  rpc: string;
  ranges: number; // ranges per SetFilter (0 for Status)
  form?: SetForm;
  clients: number;
  p50Ms: number[]; // per round
  p99Ms: number[];
  perSecond: number[];
  pooled: { calls: number; p50Ms: number; p99Ms: number; maxMs: number };
  /** Calls over 5 ms: when (ms since the agent answered first) and how long. */
  slow: { atMs: number; ms: number }[];
  /** The untimed warm-up run before round 1, as measured: the first calls of a fresh agent. */
  warmup: { calls: number; p50Ms: number; p99Ms: number; firstMs: number };
}

export const SLOW_MS = 5;

/** `n` write ranges of 8 sectors, 16 sectors apart: what a 4096-range filter looks like. */
export function manyRanges(n: number, from = 0): SetFilterRequest['ranges'] {
  return Array.from({ length: n }, (_, i) => ({ start: from + i * 16, end: from + i * 16 + 7, ops: ['OP_WRITE' as const] }));
}

interface Combo {
  key: string;
  rpc: 'SetFilter' | 'Status';
  ranges: number;
  form?: SetForm;
  clients: number;
  calls: number;
}

export async function runControl(opts: { rounds: number; calls: number; log: (s: string) => void }): Promise<LatencyResult[]> {
  const small = createLoop(16);
  const big = createLoop(64); // 4096 ranges 16 sectors apart need 32 MiB
  const agent = await startAgent({ pinDir: `/sys/fs/bpf/iofilter-bench-ctl-${process.pid}`, attach: 'observe', args: ['--log-level', 'warn'] });
  const t0 = Date.now();
  const n = opts.calls;
  const combos: Combo[] = [
    { key: 'set1', rpc: 'SetFilter', ranges: 1, clients: 1, calls: n },
    { key: 'set4096full', rpc: 'SetFilter', ranges: 4096, form: 'full', clients: 1, calls: Math.max(20, n / 10) },
    { key: 'set4096', rpc: 'SetFilter', ranges: 4096, form: 'basic', clients: 1, calls: Math.max(20, n / 10) },
    { key: 'set4096packed', rpc: 'SetFilter', ranges: 4096, form: 'packed', clients: 1, calls: Math.max(20, n / 10) },
    { key: 'status', rpc: 'Status', ranges: 0, clients: 1, calls: n },
    { key: 'set1x16', rpc: 'SetFilter', ranges: 1, clients: 16, calls: 2 * n },
    { key: 'statusx16', rpc: 'Status', ranges: 0, clients: 16, calls: 2 * n },
  ];
  const all: number[][] = combos.map(() => []);
  const results: LatencyResult[] = combos.map((c) => ({
    key: c.key, rpc: c.rpc, ranges: c.ranges, form: c.form, clients: c.clients, p50Ms: [], p99Ms: [], perSecond: [], pooled: { calls: 0, p50Ms: NaN, p99Ms: NaN, maxMs: NaN }, slow: [], warmup: { calls: 0, p50Ms: NaN, p99Ms: NaN, firstMs: NaN },
  }));
  const clients = Array.from({ length: 16 }, () => new IoFilterClient(agent.address, { timeoutMs: 30_000 }));
  const request = (c: Combo, disk: LoopDevice, k: number): SetFilterRequest => {
    if (c.ranges === 1) return { device: disk.path, ranges: [{ start: k * 8, end: k * 8 + 7, ops: ['OP_WRITE'] }], ttlMs: 600_000 };
    const req: SetFilterRequest = { device: disk.path, ranges: manyRanges(c.ranges), ttlMs: 600_000 };
    // packed: encoded per call, as the CLI does, so its cost is in the figure
    return c.form === 'full' ? { ...req, view: 'FILTER_VIEW_FULL' } : req;
  };
  try {
    await clients[0].setFilter(request(combos[0], small, 0)); // Status shows this one filter
    const run = async (i: number, timed: boolean): Promise<number[]> => {
      const c = combos[i];
      const disk = c.ranges > 1 ? big : small;
      const reqs = clients.slice(0, c.clients).map((_, j) => request(c, disk, j));
      const lat: number[] = [];
      let left = c.calls;
      const started = process.hrtime.bigint();
      await Promise.all(
        clients.slice(0, c.clients).map(async (cl, j) => {
          while (left-- > 0) {
            const t = process.hrtime.bigint();
            if (c.rpc === 'SetFilter') await cl.setFilter(c.form === 'packed' ? compactRanges(reqs[j]) : reqs[j]);
            else await cl.status();
            const ms = Number(process.hrtime.bigint() - t) / 1e6;
            lat.push(ms);
            if (timed && ms > SLOW_MS && results[i].slow.length < 500) results[i].slow.push({ atMs: Date.now() - t0, ms: Math.round(ms * 100) / 100 });
          }
        }),
      );
      const wallS = Number(process.hrtime.bigint() - started) / 1e9;
      if (c.ranges > 1) await clients[0].deleteFilter(big.path); // Status and the others see one small filter
      if (timed) {
        all[i].push(...lat);
        results[i].p50Ms.push(percentile(lat, 50));
        results[i].p99Ms.push(percentile(lat, 99));
        results[i].perSecond.push(lat.length / wallS);
      }
      return lat;
    };
    for (let i = 0; i < combos.length; i++) {
      const lat = await run(i, false);
      results[i].warmup = { calls: lat.length, p50Ms: percentile(lat, 50), p99Ms: percentile(lat, 99), firstMs: lat[0] };
      opts.log(`warm-up ${combos[i].key}: first call ${lat[0].toFixed(2)} ms, p50 ${percentile(lat, 50).toFixed(2)} ms, p99 ${percentile(lat, 99).toFixed(2)} ms`);
    }
    for (let round = 0; round < opts.rounds; round++) {
      for (let k = 0; k < combos.length; k++) {
        const i = (round + k) % combos.length;
        const lat = await run(i, true);
        opts.log(`round ${round + 1}/${opts.rounds} ${combos[i].key}: p50 ${percentile(lat, 50).toFixed(2)} ms, p99 ${percentile(lat, 99).toFixed(2)} ms`);
      }
    }
  } finally {
    await clients[0].detach().catch(() => undefined);
    clients.forEach((c) => c.close());
    await agent.stop();
    small.detach();
    big.detach();
  }
  results.forEach((r, i) => (r.pooled = { calls: all[i].length, p50Ms: percentile(all[i], 50), p99Ms: percentile(all[i], 99), maxMs: Math.max(...all[i]) }));
  return results;
}

if (require.main === module) {
  // alone: node dist/bench/control.js '{"rounds":3,"calls":300}' out.json
  const [json, out] = process.argv.slice(2);
  runControl({ ...JSON.parse(json), log: (s: string) => process.stderr.write(`  ${s}\n`) })
    .then((r) => fs.writeFileSync(out, JSON.stringify({ machine: machine(), results: r }, null, 1)))
    .catch((e) => {
      process.stderr.write(`control bench failed: ${e.stack ?? e}\n`);
      process.exit(1);
    });
}
