// Control-plane latency and throughput against a real local agent (observe mode):
// SetFilter and Status at 1 and 16 concurrent clients, interleaved by round.
import { IoFilterClient } from '../client';
import { startAgent } from '../tests/helpers/agent';
import { createLoop } from '../tests/helpers/loop';

export interface LatencyResult {
  rpc: string;
  clients: number;
  p50Ms: number[];
  p99Ms: number[];
  perSecond: number[];
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

export async function runControl(opts: { rounds: number; callsPerRun: number; log: (s: string) => void }): Promise<LatencyResult[]> {
  const disk = createLoop(16);
  const agent = await startAgent({ pinDir: `/sys/fs/bpf/iofilter-bench-ctl-${process.pid}`, attach: 'observe', args: ['--log-level', 'warn'] });
  const combos = [
    ['SetFilter', 1], ['Status', 1], ['SetFilter', 16], ['Status', 16],
  ] as const;
  const results: LatencyResult[] = combos.map(([rpc, clients]) => ({ rpc, clients, p50Ms: [], p99Ms: [], perSecond: [] }));
  const clients = Array.from({ length: 16 }, () => new IoFilterClient(agent.address, { timeoutMs: 10_000 }));
  try {
    await clients[0].setFilter({ device: disk.path, ranges: [{ start: 0, end: 7, ops: ['OP_WRITE'] }], ttlMs: 600_000 });
    for (let round = 0; round < opts.rounds; round++) {
      for (let i = 0; i < combos.length; i++) {
        const [rpc, n] = combos[i];
        const lat: number[] = [];
        let left = opts.callsPerRun;
        const started = process.hrtime.bigint();
        await Promise.all(
          clients.slice(0, n).map(async (c, k) => {
            while (left-- > 0) {
              const t = process.hrtime.bigint();
              if (rpc === 'SetFilter') await c.setFilter({ device: disk.path, ranges: [{ start: k * 8, end: k * 8 + 7, ops: ['OP_WRITE'] }], ttlMs: 600_000 });
              else await c.status();
              lat.push(Number(process.hrtime.bigint() - t) / 1e6);
            }
          }),
        );
        const wallS = Number(process.hrtime.bigint() - started) / 1e9;
        results[i].p50Ms.push(pct(lat, 50));
        results[i].p99Ms.push(pct(lat, 99));
        results[i].perSecond.push(lat.length / wallS);
        opts.log(`round ${round + 1} ${rpc} x${n}: p50 ${pct(lat, 50).toFixed(2)} ms, p99 ${pct(lat, 99).toFixed(2)} ms, ${Math.round(lat.length / wallS)}/s`);
      }
    }
  } finally {
    await clients[0].detach().catch(() => undefined);
    clients.forEach((c) => c.close());
    await agent.stop();
    disk.detach();
  }
  return results;
}
