// The VM end-to-end fixture: one booted test VM (tests/vm/run, kernel IOFILTER_KERNEL)
// with loop disks, the agent running in the guest and a client on this host over real
// TCP, plus the guest-side actions the suites share: direct I/O that reports 'ok' or
// 'EIO', an empty flush, killing and restarting the agent, the guest's own clock.
import * as path from 'node:path';
import { IoFilterClient } from '../../client';
import type { StatusResponse__Output } from '../../proto/gen/iofilter/v1/StatusResponse';
import { KERNEL, Vm } from './vm';

export const PIN_DIR = '/sys/fs/bpf/iofilter';
export { KERNEL };
/** Its upstream series ("6.12"): Debian's stock kernels and the distro-like builds by their version. */
export const SERIES = ({ 'stock-bookworm': '6.1', 'stock-trixie': '6.12', 'stock-sid': '7.2' } as Record<string, string>)[KERNEL] ?? KERNEL.replace(/^distro-/, '');
/** Block error injection: the project's builds from 7.2 have it (kernel.config.fragment), Debian's do not. */
export const BUILT_WITH_BLKINJECT = !KERNEL.startsWith('stock-') && Number(SERIES.split('.')[0]) * 100 + Number(SERIES.split('.')[1]) >= 702;

export type Outcome = 'ok' | 'EIO';

export interface Part {
  path: string;
  start: number;
}

export class Guest {
  client!: IoFilterClient;
  agentPid = 0;
  /** /dev/loopN, 64 MiB, no partitions. */
  disk = '';
  /** A second unpartitioned 64 MiB disk. */
  other = '';
  /** /dev/loopM with two 16 MiB partitions. */
  pdisk = '';
  parts: Part[] = [];

  private constructor(readonly vm: Vm) {}

  static async boot(agentArgs: string[] = ['--attach', 'none']): Promise<Guest> {
    const g = new Guest(await Vm.boot());
    try {
      await g.setUp(agentArgs);
    } catch (e) {
      await g.shutdown(); // a suite whose beforeAll failed never calls it: no VM left running
      throw e;
    }
    return g;
  }

  private async setUp(agentArgs: string[]): Promise<void> {
    this.client = new IoFilterClient(this.vm.agentAddress, { timeoutMs: 60_000 });
    const loop = (img: string, mib: number) =>
      this.vm.sh(`truncate -s ${mib}M /dev/shm/${img} && (losetup -f --show --direct-io=on /dev/shm/${img} 2>/dev/null || losetup -f --show /dev/shm/${img})`);
    this.disk = await loop('d1.img', 64);
    this.other = await loop('d3.img', 64);
    this.pdisk = await this.vm.sh(
      `truncate -s 40M /dev/shm/d2.img && printf 'label: dos\\nsize=16MiB, type=83\\nsize=16MiB, type=83\\n' | sfdisk --quiet /dev/shm/d2.img && losetup -f --show -P /dev/shm/d2.img`,
    );
    for (const i of [1, 2]) {
      const name = `${path.basename(this.pdisk)}p${i}`;
      const start = Number(await this.vm.sh(`for t in $(seq 50); do [ -e /sys/class/block/${name}/start ] && break; sleep 0.1; done; cat /sys/class/block/${name}/start`));
      this.parts.push({ path: `/dev/${name}`, start });
    }
    await this.startAgent(agentArgs);
  }

  async shutdown(): Promise<void> {
    this.client?.close();
    await this.vm.shutdown();
  }

  /** One direct I/O of `count` sectors at `sector`: 'ok', 'EIO', or dd's complaint. */
  async io(dev: string, op: 'read' | 'write', sector: number, count = 8): Promise<string> {
    const bytes = sector * 512;
    const cmd =
      op === 'write'
        ? `dd if=/dev/zero of=${dev} bs=${count * 512} count=1 seek=${bytes} oflag=direct,seek_bytes conv=notrunc status=none`
        : `dd if=${dev} of=/dev/null bs=${count * 512} count=1 skip=${bytes} iflag=direct,skip_bytes status=none`;
    const r = await this.vm.exec(cmd);
    if (r.code === 0) return 'ok';
    return /Input\/output error/.test(r.stderr) ? 'EIO' : r.stderr.trim();
  }

  /** fsync on the block device: an empty flush bio (REQ_OP_WRITE|REQ_PREFLUSH or REQ_OP_FLUSH, size 0). */
  async fsync(dev: string): Promise<string> {
    const r = await this.vm.exec(`dd if=/dev/zero of=${dev} bs=4096 count=0 conv=fsync,notrunc status=none`);
    return r.code === 0 ? 'ok' : /Input\/output error/.test(r.stderr) ? 'EIO' : r.stderr.trim();
  }

  /** The guest's CLOCK_BOOTTIME in ms (what the kernel program compares TTLs with). */
  async uptimeMs(): Promise<number> {
    return Math.round(Number((await this.vm.sh('cut -d" " -f1 /proc/uptime')).trim()) * 1000);
  }

  /**
   * Waits, on the guest's own timeline, until the agent just started logs "serving" (or
   * exits), then asks it over a fresh channel: a channel that tried while the guest was
   * still booting node sits in gRPC's reconnect backoff (up to 120 s), however soon
   * the agent then listens, so polling through it fails on a slow or loaded emulator.
   */
  async waitForAgent(): Promise<StatusResponse__Output> {
    const pid = this.agentPid;
    const waited = await this.vm.exec(
      `for t in $(seq 6000); do grep -q '"pid":${pid},.*"msg":"serving"' /dev/shm/iofilter-agent.log && exit 0; kill -0 ${pid} 2>/dev/null || exit 3; sleep 0.1; done; exit 4`,
      660_000,
    );
    if (waited.code !== 0)
      throw new Error(
        `agent ${pid} ${waited.code === 3 ? 'exited' : 'did not log "serving" in 600 s of guest time'}:\n${(await this.vm.exec('tail -20 /dev/shm/iofilter-agent.log')).stdout}`,
      );
    this.client?.close();
    this.client = new IoFilterClient(this.vm.agentAddress, { timeoutMs: 60_000 });
    return this.client.status();
  }

  async startAgent(args: string[] = ['--attach', 'none'], env = ''): Promise<StatusResponse__Output> {
    this.agentPid = await this.vm.startAgent(args, env);
    return this.waitForAgent();
  }

  /** SIGKILL (or SIGTERM) the agent and wait until the process is gone; throws if it is not. */
  async killAgent(signal: 'KILL' | 'TERM' = 'KILL'): Promise<void> {
    const r = await this.vm.exec(
      `kill -${signal} ${this.agentPid} || exit 3; for t in $(seq 600); do kill -0 ${this.agentPid} 2>/dev/null || exit 0; sleep 0.1; done; exit 4`,
    );
    if (r.code !== 0) throw new Error(`agent ${this.agentPid} did not die on SIG${signal} (exit ${r.code}: ${r.stderr})`);
    const left = await this.vm.exec(`pgrep -f '[d]ist/agent/main.js' || true`);
    if (left.stdout.trim()) throw new Error(`an agent process is still running after SIG${signal}: ${left.stdout.trim()}`);
  }

  async restartAgent(signal: 'KILL' | 'TERM' = 'KILL'): Promise<StatusResponse__Output> {
    await this.killAgent(signal);
    return this.startAgent(['--attach', 'none']);
  }

  async attach(mode: 'fmod_ret' | 'kprobe' | 'observe'): Promise<void> {
    await this.client.detach();
    const st = await this.client.attach(mode);
    const hook = mode === 'observe' ? /^(fentry\/should_fail_bio|tp_btf\/block_bio_queue)$/ : new RegExp(`^${mode}/should_fail_bio$`);
    if (!st.attached || st.mode !== `MODE_${mode.toUpperCase()}` || !hook.test(st.hook))
      throw new Error(`attach ${mode} gave ${JSON.stringify(st)}`);
  }

  async filterOf(dev: string) {
    const st = await this.client.status();
    return st.filters.find((f) => `/dev/${f.device?.name}` === dev);
  }

  /** should_fail_bio and its compiler clones in the guest's /proc/kallsyms, sorted. */
  async hookSymbols(): Promise<string[]> {
    const syms = await this.vm.sh(`awk '$3 ~ /^should_fail_bio($|\\.)/ { print $3 }' /proc/kallsyms | sort`);
    return syms ? syms.split('\n') : [];
  }

  /** Lines of the guest's vmlinux BTF that name should_fail_bio. */
  async hookBtfLines(): Promise<number> {
    return Number(await this.vm.sh('bpftool btf dump file /sys/kernel/btf/vmlinux | grep -c should_fail_bio || true', 300_000));
  }

  /** The guest's dmesg lines that mean the kernel went wrong. */
  async oopses(): Promise<string> {
    return (await this.vm.exec('dmesg | grep -E "BUG:|Oops:|Kernel panic|general protection fault|NX-protected|WARNING:" || true')).stdout.trim();
  }
}
