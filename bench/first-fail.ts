// Inside the VM (fmod_ret): how long after SetFilter returns does the first I/O fail?
// The filter must already be in force when the RPC returns, so the very first direct
// write after it must fail. `node dist/bench/first-fail.js OUT.json`
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import pino from 'pino';
import { resolveConfig } from '../agent/config';
import { createAgent } from '../agent/server';
import { IoFilterClient } from '../client';
import { createLoop } from '../tests/helpers/loop';

async function main() {
  const out = process.argv[2];
  const disk = createLoop(16);
  const cfg = resolveConfig({ listen: '127.0.0.1:0', attach: 'fmod_ret', pinDir: `/sys/fs/bpf/iofilter-first-fail-${process.pid}` });
  const agent = await createAgent(cfg, pino({ level: 'warn' }));
  const client = new IoFilterClient(agent.address, { timeoutMs: 60_000 });
  const samples: { firstIoFailed: boolean; msToEio: number }[] = [];
  for (let i = 0; i < 5; i++) {
    await client.setFilter({ device: disk.path, wholeDeviceOps: ['OP_WRITE'], ttlMs: 60_000 });
    const t = process.hrtime.bigint();
    const r = spawnSync('dd', ['if=/dev/zero', `of=${disk.path}`, 'bs=4096', 'count=1', 'oflag=direct', 'conv=notrunc', 'status=none'], { encoding: 'utf8' });
    samples.push({ firstIoFailed: /Input\/output error/.test(r.stderr), msToEio: Number(process.hrtime.bigint() - t) / 1e6 });
    await client.deleteFilter(disk.path);
  }
  await client.detach();
  client.close();
  await agent.stop(1000);
  disk.detach();
  fs.writeFileSync(out, JSON.stringify(samples));
}
main().catch((e) => {
  process.stderr.write(`first-fail bench failed: ${e.stack ?? e}\n`);
  process.exit(1);
});
