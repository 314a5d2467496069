// Real agent processes for host-tier tests: spawns `node dist/agent/main.js` (needs
// `npm run build`) on a free loopback port with its own pin dir, waits until it
// answers, and stops or kills it.
import { ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import { IoFilterClient } from '../../client';
import { freePort, ROOT } from './common';

export const AGENT_MAIN = path.join(ROOT, 'dist', 'agent', 'main.js');

export interface RunningAgent {
  address: string;
  proc: ChildProcess;
  pinDir: string;
  logs(): string;
  /** SIGTERM (graceful: pins stay) and wait for exit; resolves the exit code. */
  stop(): Promise<number | null>;
  /** Any signal, e.g. SIGKILL; waits for exit. */
  kill(signal: NodeJS.Signals): Promise<void>;
}

export interface AgentOptions {
  pinDir: string;
  attach?: 'auto' | 'fmod_ret' | 'kprobe' | 'observe' | 'none';
  /** Extra flags, e.g. ['--audit-log', f] or TLS flags. */
  args?: string[];
  /** Full listen address; default 127.0.0.1:<free port>. */
  listen?: string;
  /** Wait for an answer over plain gRPC (false for TLS-only agents). */
  waitReady?: boolean;
}

export async function startAgent(o: AgentOptions): Promise<RunningAgent> {
  const listen = o.listen ?? `127.0.0.1:${await freePort()}`;
  const proc = spawn(process.execPath, [AGENT_MAIN, '--listen', listen, '--pin-dir', o.pinDir, '--attach', o.attach ?? 'observe', ...(o.args ?? [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const agent: RunningAgent = {
    address: listen,
    proc,
    pinDir: o.pinDir,
    logs: () => out,
    stop: async () => {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      return exited;
    },
    kill: async (signal) => {
      if (proc.exitCode === null) proc.kill(signal);
      await exited;
    },
  };
  if (o.waitReady === false) return agent;
  const client = new IoFilterClient(listen, { timeoutMs: 2000 });
  try {
    const deadline = Date.now() + 60_000; // probe, attach and the self-test: generous for a slow machine
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`agent exited ${proc.exitCode}:\n${out}`);
      try {
        await client.status();
        return agent;
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`agent did not answer on ${listen}: ${(e as Error).message}\n${out}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } finally {
    client.close();
  }
}
