// Fan-out: `iofilterctl set` across 10, 100 and 1000 agent endpoints on loopback (the
// real agent code over an in-memory kernel, at most 250 endpoints per process, hosted
// by endpoints.ts): wall time and the client's peak RSS, sizes interleaved by round.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface FanoutResult {
  endpoints: number;
  wallMs: number[];
  rssMiB: number[];
  ok: number[];
}

const ROOT = path.join(__dirname, '..', '..');

async function startEndpoints(max: number, procs: ReturnType<typeof spawn>[]): Promise<string[]> {
  const addrs: string[] = [];
  for (let left = max; left > 0; left -= 250) {
    const p = spawn(process.execPath, [path.join(__dirname, 'endpoints.js'), String(Math.min(250, left))], { stdio: ['ignore', 'pipe', 'inherit'] });
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
  return addrs;
}

export async function fanout(sizes: number[], rounds: number, log: (s: string) => void): Promise<FanoutResult[]> {
  const procs: ReturnType<typeof spawn>[] = [];
  const results = sizes.map((endpoints) => ({ endpoints, wallMs: [] as number[], rssMiB: [] as number[], ok: [] as number[] }));
  try {
    const addrs = await startEndpoints(Math.max(...sizes), procs);
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
