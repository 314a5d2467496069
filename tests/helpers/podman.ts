// Real podman containers for the host tier: the agent image (scripts/build-image, cached by
// its inputs), the agent run as the DaemonSet runs it (tests/helpers/daemonset.ts) with a
// test's own port, pin dir and state dir, and workload containers doing I/O on a device.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { IoFilterClient } from '../../client';
import { ROOT } from './common';
import { podmanRunArgs, PodmanRunOptions } from './daemonset';

export const TEST_IMAGE = 'localhost/iofilter-agent:host-test';
/** crun refuses a hybrid cgroup v1/v2 host ("cgroups in hybrid mode not supported"); runc runs on both. */
export const RUNTIME = 'runc';

/** Why podman containers cannot run here, or null. */
export function podmanUnavailableReason(): string | null {
  for (const t of ['podman', 'runc', 'mmdebstrap', 'umoci'])
    if (spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0) return `no ${t} (scripts/install-deps installs it)`;
  return null;
}

/**
 * --ulimit flags at this process's own limits. Podman otherwise asks for RLIMIT_NOFILE
 * 1048576, which a runtime without CAP_SYS_RESOURCE (this machine's root has none) cannot
 * set. RLIMIT_NPROC is capped at 32768, the limit conmon runs with here (measured: higher
 * fails with EPERM in runc's setrlimit).
 */
export function ulimitFlags(): string[] {
  const lim = fs.readFileSync('/proc/self/limits', 'utf8');
  const hard = (name: string) => {
    const m = new RegExp(`^${name}\\s+\\S+\\s+(\\S+)`, 'm').exec(lim);
    return m && m[1] !== 'unlimited' ? Number(m[1]) : Infinity;
  };
  const nofile = Math.min(hard('Max open files'), 1048576);
  const nproc = Math.min(hard('Max processes'), 32768);
  return ['--ulimit', `nofile=${nofile}:${nofile}`, '--ulimit', `nproc=${nproc}:${nproc}`];
}

export function podman(args: string[], opts: { allowFail?: boolean; timeoutMs?: number } = {}): { code: number; out: string; err: string } {
  const r = spawnSync('podman', args, { encoding: 'utf8', timeout: opts.timeoutMs ?? 120_000 });
  const res = { code: r.status ?? -1, out: (r.stdout ?? '').trim(), err: (r.stderr ?? '').trim() };
  if (res.code !== 0 && !opts.allowFail) throw new Error(`podman ${args.join(' ')}: exit ${res.code}: ${res.err || r.error?.message}`);
  return res;
}

/** scripts/build-image (a no-op past the podman check when its inputs are unchanged); its report. */
export function buildImage(): string {
  return execFileSync(path.join(ROOT, 'scripts', 'build-image'), ['--tag', TEST_IMAGE], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 600_000 });
}

export interface AgentContainerOptions {
  name: string;
  port: number;
  pinDir: string;
  stateDir: string;
  editPod?: PodmanRunOptions['editPod'];
}

/** The DaemonSet's agent under podman, listening on 127.0.0.1:port without TLS (the rest as the YAML says). */
export class AgentContainer {
  readonly address: string;
  private readonly configDir: string;
  constructor(readonly o: AgentContainerOptions) {
    this.address = `127.0.0.1:${o.port}`;
    this.configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'iofilter-ctr-config-'));
  }

  /** The podman arguments, from deploy/kubernetes/daemonset.yaml. */
  args(): string[] {
    const tls = fs.mkdtempSync(path.join(this.configDir, 'tls-')); // mounted, unused: the test listens on loopback
    return podmanRunArgs({
      name: this.o.name,
      image: TEST_IMAGE,
      runtime: RUNTIME,
      configDir: this.configDir,
      secrets: { 'iofilter-agent-tls': tls },
      hostPaths: { '/var/lib/iofilter': this.o.stateDir },
      editPod: this.o.editPod,
      extraFlags: ulimitFlags(),
      editConfig: (_cm, key, text) => {
        if (key !== 'agent.json') return text;
        const c = JSON.parse(text);
        // a test's own port and pin dir beside other helpers' agents; TLS needs a non-loopback listener
        Object.assign(c, { listen: this.address, pinDir: this.o.pinDir });
        delete c.tls;
        delete c.metricsListen;
        return JSON.stringify(c, null, 2);
      },
    });
  }

  start(): void {
    podman(this.args());
  }

  async waitReady(ms = 60_000): Promise<void> {
    const client = new IoFilterClient(this.address, { timeoutMs: 2000 });
    const deadline = Date.now() + ms;
    try {
      for (;;) {
        try {
          await client.status();
          return;
        } catch (e) {
          const st = this.state();
          if (st.status !== 'running') throw new Error(`agent container ${st.status} (exit ${st.exitCode}):\n${this.logs()}`);
          if (Date.now() > deadline) throw new Error(`agent container did not answer on ${this.address}: ${(e as Error).message}\n${this.logs()}`);
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    } finally {
      client.close();
    }
  }

  state(): { status: string; exitCode: number; pid: number } {
    const [status, exitCode, pid] = podman(['inspect', this.o.name, '--format', '{{.State.Status}} {{.State.ExitCode}} {{.State.Pid}}']).out.split(' ');
    return { status, exitCode: Number(exitCode), pid: Number(pid) };
  }

  logs(): string {
    const r = podman(['logs', this.o.name], { allowFail: true });
    return `${r.out}\n${r.err}`;
  }

  remove(): void {
    podman(['rm', '-f', '-t', '0', this.o.name], { allowFail: true });
    fs.rmSync(this.configDir, { recursive: true, force: true });
  }
}

/** A long-running container with `dev` passed in, whose processes do I/O through `podman exec`. */
export class Workload {
  constructor(
    readonly name: string,
    readonly dev: string,
  ) {
    podman(['--runtime', RUNTIME, 'run', '-d', '--name', name, '--network', 'none', '--device', dev, ...ulimitFlags(), '--entrypoint', '/bin/sleep', TEST_IMAGE, 'infinity']);
  }

  id(): string {
    return podman(['inspect', this.name, '--format', '{{.Id}}']).out;
  }

  /** Its main process in the host's pid namespace (what `--pid` takes). */
  pid(): number {
    return Number(podman(['inspect', this.name, '--format', '{{.State.Pid}}']).out);
  }

  /** Its cgroup v2 path as the README tells users to find it: the "0::" line of /proc/PID/cgroup. */
  cgroupPath(): string {
    const line = fs.readFileSync(`/proc/${this.pid()}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'));
    if (!line) throw new Error(`${this.name}: no cgroup v2 line in /proc/${this.pid()}/cgroup`);
    return line.slice(3);
  }

  /** dd inside the container; `direct` adds iflag/oflag=direct, `fsync` conv=fsync. 4 KiB blocks. */
  dd(op: 'read' | 'write', block: number, count: number, how: { direct?: boolean; fsync?: boolean } = {}): void {
    const args =
      op === 'read'
        ? [`if=${this.dev}`, 'of=/dev/null', `skip=${block}`, ...(how.direct ? ['iflag=direct'] : [])]
        : ['if=/dev/zero', `of=${this.dev}`, `seek=${block}`, 'conv=notrunc' + (how.fsync ? ',fsync' : ''), ...(how.direct ? ['oflag=direct'] : [])];
    podman(['exec', this.name, '/bin/dd', ...args, 'bs=4096', `count=${count}`, 'status=none']);
  }

  remove(): void {
    podman(['rm', '-f', '-t', '0', this.name], { allowFail: true });
  }
}
