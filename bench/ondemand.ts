// Attach on demand (issue 25) against a real local agent (its own process,
// `--attach observe --attach-on-demand`), one client, in interleaved samples:
//  - the first SetFilter on an idle agent: attach, self-test and the filter, end to end;
//  - a SetFilter while attached (the same filter replaced), for comparison;
//  - the last DeleteFilter: the delete and the detach;
//  - expiry: from the filter's deadline to Status saying "not attached" (the reaper's
//    1 s tick plus the detach), polled every 10 ms. The deadline is taken as the
//    SetFilter call's start + TTL, which is at or before the agent's own: the figure is
//    an upper bound.
// The idle data-path cost is the datapath bench's "on demand, idle" case.
import * as fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { IoFilterClient } from '../client';
import { startAgent } from '../tests/helpers/agent';
import { createLoop } from '../tests/helpers/loop';

export interface OnDemandResult {
  firstSetMs: number[];
  attachedSetMs: number[];
  lastDeleteMs: number[];
  expiryToDetachMs: number[];
}

export async function runOnDemand(opts: { samples: number; log: (s: string) => void }): Promise<OnDemandResult> {
  const disk = createLoop(16);
  const agent = await startAgent({ pinDir: `/sys/fs/bpf/iofilter-bench-od-${process.pid}`, attach: 'observe', args: ['--attach-on-demand', '--log-level', 'warn'] });
  const client = new IoFilterClient(agent.address, { timeoutMs: 60_000 });
  const r: OnDemandResult = { firstSetMs: [], attachedSetMs: [], lastDeleteMs: [], expiryToDetachMs: [] };
  const req = (ttlMs: number) => ({ device: disk.path, ranges: [{ start: 0, end: 7, ops: ['OP_WRITE' as const] }], ttlMs });
  const timed = async (fn: () => Promise<unknown>) => {
    const t = performance.now();
    await fn();
    return performance.now() - t;
  };
  const attached = async () => !!(await client.status()).state?.attached;
  try {
    if (await attached()) throw new Error('the on-demand agent attached with no filter');
    for (let i = 0; i < opts.samples; i++) {
      r.firstSetMs.push(await timed(() => client.setFilter(req(600_000))));
      if (!(await attached())) throw new Error('the first SetFilter returned without attaching');
      r.attachedSetMs.push(await timed(() => client.setFilter(req(600_000))));
      r.lastDeleteMs.push(await timed(() => client.deleteFilter(disk.path)));
      if (await attached()) throw new Error('still attached after the last DeleteFilter');
      const ttlMs = 1000;
      const start = performance.now();
      await client.setFilter(req(ttlMs));
      while (await attached()) {
        if (performance.now() - start > ttlMs + 30_000) throw new Error('not detached 30 s after the TTL');
        await new Promise((res) => setTimeout(res, 10));
      }
      r.expiryToDetachMs.push(performance.now() - (start + ttlMs));
      opts.log(`sample ${i + 1}/${opts.samples}: first set ${r.firstSetMs.at(-1)!.toFixed(1)} ms, set attached ${r.attachedSetMs.at(-1)!.toFixed(1)} ms, last delete ${r.lastDeleteMs.at(-1)!.toFixed(1)} ms, expiry to detach ${r.expiryToDetachMs.at(-1)!.toFixed(0)} ms`);
    }
  } finally {
    client.close();
    await agent.stop();
    disk.detach();
  }
  return r;
}

/** Alone: `node dist/bench/ondemand.js SAMPLES OUT.json`. */
if (require.main === module) {
  const [samples, out] = process.argv.slice(2);
  runOnDemand({ samples: Number(samples), log: (s) => process.stderr.write(`  ${s}\n`) })
    .then((r) => fs.writeFileSync(out, JSON.stringify(r)))
    .catch((e) => {
      process.stderr.write(`on-demand bench failed: ${e.stack ?? e}\n`);
      process.exit(1);
    });
}
