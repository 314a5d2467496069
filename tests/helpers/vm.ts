// Host side of the VM end-to-end tests: boots the test VM (tests/vm/run) with the
// agent port and a command port forwarded to the host's loopback, runs commands in
// the guest, and starts/kills the agent there. The host acts as the control host.
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { freePort, ROOT } from './common';


export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The kernel under test, as tests/vm/kernel names it (and its default). */
export const KERNEL = process.env.IOFILTER_KERNEL || 'distro-6.1';

/** Why the VM tier cannot run here, or null. */
export function vmUnavailableReason(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (QEMU with the host root over 9p, BPF inside)';
  for (const tool of ['qemu-system-x86_64', 'busybox']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is not installed (scripts/install-deps)`;
  }
  if (!fs.existsSync(path.join(ROOT, 'dist', 'agent', 'main.js'))) return 'the project is not built (npm run build)';
  const kind = /^(stock|distro)-/.exec(KERNEL)?.[1];
  const what = kind === 'stock' ? 'stock kernel cannot be fetched' : kind === 'distro' ? 'distro-like kernel does not build' : 'test kernel does not build';
  const k = spawnSync(path.join(ROOT, 'tests', 'vm', 'kernel'), { encoding: 'utf8', timeout: 20 * 60_000, env: { ...process.env, IOFILTER_KERNEL: KERNEL } });
  if (k.status !== 0) return `the ${what}: ${k.stderr.trim().split('\n').slice(-3).join(' / ')}`;
  return null;
}

export class Vm {
  private output = '';
  private constructor(
    private readonly proc: ChildProcess,
    readonly execPort: number,
    /** 127.0.0.1:PORT on the host, forwarded to the guest agent's port 50051. */
    readonly agentAddress: string,
  ) {
    proc.stdout?.on('data', (d) => (this.output += d));
    proc.stderr?.on('data', (d) => (this.output += d));
  }

  static async boot(): Promise<Vm> {
    // below the kernel's ephemeral range (32768+): a port picked there can be taken by any
    // process's listen(0) before QEMU binds it, which a busy machine does within seconds
    const below = { min: 20000, max: 32000 };
    const [execPort, agentPort] = [await freePort(below), await freePort(below)];
    const proc = spawn(
      path.join(ROOT, 'tests', 'vm', 'run'),
      ['--fwd', `${execPort}:7070`, '--fwd', `${agentPort}:50051`, 'node', 'tests/vm/guest-exec.js', '7070'],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, IOFILTER_VM_TIMEOUT: '3600' } },
    );
    const vm = new Vm(proc, execPort, `127.0.0.1:${agentPort}`);
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`VM exited early (${proc.exitCode}):\n${vm.output}`);
      try {
        const r = await vm.exec('true', 5000);
        if (r.code === 0) return vm;
      } catch {
        /* not up yet */
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    proc.kill();
    throw new Error(`VM did not come up in 120 s:\n${vm.output}`);
  }

  /** Runs a bash command line in the guest (as root, in the project directory). */
  exec(cmd: string, timeoutMs = 120_000): Promise<ExecResult> {
    return this.post('/exec', { cmd, timeoutMs }, timeoutMs + 5000) as Promise<ExecResult>;
  }

  /** Like exec, but throws unless the command exits 0. */
  async sh(cmd: string, timeoutMs?: number): Promise<string> {
    const r = await this.exec(cmd, timeoutMs);
    if (r.code !== 0) throw new Error(`guest: \`${cmd}\` exited ${r.code}: ${r.stderr || r.stdout}`);
    return r.stdout.trim();
  }

  private post(urlPath: string, body: object, timeoutMs: number): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: this.execPort, path: urlPath, method: 'POST', timeout: timeoutMs, agent: false },
        (res) => {
          let data = '';
          res.on('data', (d) => (data += d));
          res.on('end', () => {
            try {
              resolve(JSON.parse(data));
            } catch (e) {
              reject(e);
            }
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`guest ${urlPath} timed out`)));
      req.on('error', reject);
      req.end(JSON.stringify(body));
    });
  }

  /** Starts the agent in the guest (listening for the forwarded port); returns its pid. */
  async startAgent(args: string[] = [], env = ''): Promise<number> {
    const pid = await this.sh(
      `${env} setsid node dist/agent/main.js --listen 0.0.0.0:50051 --insecure ${args.join(' ')} >>/dev/shm/iofilter-agent.log 2>&1 </dev/null & echo $!`,
    );
    return Number(pid);
  }

  logs(): string {
    return this.output;
  }

  async shutdown(): Promise<void> {
    if (this.proc.exitCode !== null) return;
    const exited = new Promise((r) => this.proc.once('exit', r));
    await this.post('/quit', {}, 5000).catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 30_000)))]);
    clearTimeout(timer); // else jest waits for it after the last test
    if (this.proc.exitCode === null) this.proc.kill('SIGTERM');
  }
}
