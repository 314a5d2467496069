// The attach-time self-test where /dev does not give it a scratch device: a real agent
// (observe mode) in a private mount namespace whose /dev is an empty tmpfs. With device
// nodes allowed there, the self-test reaches loop-control and its loop device through
// private nodes, runs and passes. With /dev, /run and /tmp all nodev, it cannot run:
// the block_bio_queue tracepoint is kept, said UNPROVEN in Status and by iofilterctl,
// and it counts every write. (fentry/should_fail_bio, dropped when unproven, does not
// load on a kernel without ftrace such as this host's: the VM tier shows that part.)
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { IoFilterClient } from '../../client';
import type { StatusResponse__Output } from '../../proto/gen/iofilter/v1/StatusResponse';
import { AGENT_MAIN } from '../helpers/agent';
import { freePort, ROOT } from '../helpers/common';
import { createLoop, directIo, LoopDevice } from '../helpers/loop';
import { BUILT, describeIf, hostUnavailableReason } from '../helpers/tier';

const CLI_PATH = path.join(ROOT, 'dist', 'client', 'cli.js');
const unshareReason = () => (execFileSync('sh', ['-c', 'command -v unshare || true'], { encoding: 'utf8' }).trim() ? null : 'no unshare(1) (util-linux)');
const d = describeIf(hostUnavailableReason(BUILT.agent, BUILT.addon, BUILT.cli) ?? unshareReason());

interface NsAgent {
  address: string;
  proc: ChildProcess;
  logs: () => string;
  pinDir: string;
}

/** An agent in a new mount namespace where `mounts` (a shell line) ran first, e.g. a tmpfs over /dev. */
async function agentIn(mounts: string, pinDir: string): Promise<NsAgent> {
  const address = `127.0.0.1:${await freePort()}`;
  const script = `${mounts} && exec "$0" "$1" --listen "$2" --pin-dir "$3" --attach observe`;
  const proc = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, process.execPath, AGENT_MAIN, address, pinDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (x) => (out += x));
  proc.stderr!.on('data', (x) => (out += x));
  const client = new IoFilterClient(address, { timeoutMs: 2000 });
  try {
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`agent exited ${proc.exitCode}: ${out}`);
      try {
        if ((await client.status()).state?.attached) break;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`agent did not attach within 60s: ${out}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    client.close();
  }
  return { address, proc, logs: () => out, pinDir };
}

async function stop(a: NsAgent | undefined): Promise<void> {
  if (!a) return;
  if (a.proc.exitCode === null) {
    const exited = new Promise((r) => a.proc.once('exit', r));
    a.proc.kill('SIGKILL'); // unshare execs sh, which execs node: the agent itself
    await exited;
  }
  fs.rmSync(a.pinDir, { recursive: true, force: true });
}

/** Status, and the CLI's status text, of one agent. */
async function statusOf(a: NsAgent): Promise<{ st: StatusResponse__Output; text: string }> {
  const c = new IoFilterClient(a.address, { timeoutMs: 5000 });
  try {
    const st = await c.status();
    const text = execFileSync(process.execPath, [CLI_PATH, '--host', a.address, 'status'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return { st, text };
  } finally {
    c.close();
  }
}

d('the hook self-test without /dev/loop-control (a real agent in a private mount namespace)', () => {
  let disk: LoopDevice;
  let agent: NsAgent | undefined;
  const pinDir = (tag: string) => `/sys/fs/bpf/iofilter-selftest-test-${process.pid}-${tag}`;

  beforeAll(() => {
    disk = createLoop(8);
  });
  afterEach(async () => {
    await stop(agent);
    agent = undefined;
  });
  afterAll(() => disk?.detach());

  test('an empty /dev that allows device nodes: the self-test runs through private nodes and passes', async () => {
    agent = await agentIn('mount -t tmpfs -o mode=755 iofilter-dev /dev', pinDir('nodes'));
    const { st, text } = await statusOf(agent);
    expect(st.state!.selfTest).toMatchObject({ passed: true });
    expect(st.state!.selfTest!.detail).toMatch(/no \/dev\/loop-control: opened through a private node.*no \/dev\/loop\d+: opened through a private node/);
    expect(text).toMatch(new RegExp(`attached observe \\(${st.state!.hook}\\);`));
    expect(text).toMatch(/ {2}self-test: passed at /);
    expect(text).not.toMatch(/UNPROVEN/);
    // nothing left behind: the private directories were removed (they were in the namespace's /dev)
    expect(fs.readdirSync('/dev').filter((n) => n.startsWith('iofilter-selftest-'))).toEqual([]);
  });

  test('a kernel whose should_fail_bio is only a compiler clone: each should_fail_bio hook\'s reason names the clone kallsyms has', async () => {
    // this host's /proc/kallsyms with should_fail_bio renamed as GCC names a clone, bound over the real one
    const fake = `/tmp/iofilter-kallsyms-${process.pid}`;
    agent = await agentIn(`sed 's/ should_fail_bio$/ should_fail_bio.constprop.0/' /proc/kallsyms > ${fake} && mount --bind ${fake} /proc/kallsyms && rm ${fake}`, pinDir('clone'));
    const { st } = await statusOf(agent);
    const clone = 'this kernel has no should_fail_bio to attach to, only the compiler clone should_fail_bio.constprop.0 (no BTF, not on the error-injection list)';
    const fmod = st.capabilities.find((c) => c.mode === 'MODE_FMOD_RET')!;
    expect(fmod.available).toBe(false);
    expect(fmod.reason).toMatch(/^fmod_ret\/should_fail_bio: /);
    expect(fmod.reason).toContain(clone); // after what the kernel was built without, if anything
    expect(fmod.reason).not.toMatch(/compiled out or inlined/);
  });

  test('/dev, /run and /tmp nodev: not run; the tracepoint kept and said UNPROVEN, never passed; it counts every write', async () => {
    // remounted nodev in place, contents kept: the project itself may live under /tmp
    const nodev = ['/dev', '/run', '/tmp'].map((m) => `mount --bind ${m} ${m} && mount -o remount,bind,nodev ${m}`).join(' && ');
    agent = await agentIn(nodev, pinDir('nodev'));
    const { st, text } = await statusOf(agent);
    expect(st.state!.hook).toBe('tp_btf/block_bio_queue');
    expect(st.state!.selfTest!.passed).toBe(false);
    expect(st.state!.selfTest!.detail).toMatch(/^not run: no scratch loop device \(.*\): kept, UNPROVEN: tp_btf\/block_bio_queue is the block layer's tracepoint/);
    expect(text).toMatch(/attached observe \(tp_btf\/block_bio_queue\), UNPROVEN \(the self-test could not run\);/);
    expect(text).toMatch(/ {2}self-test: UNPROVEN at \S+: not run: /);

    const c = new IoFilterClient(agent.address, { timeoutMs: 5000 });
    try {
      const f = await c.setFilter({ device: `${disk.major}:${disk.minor}`, wholeDeviceOps: ['OP_WRITE'], ttlMs: '600000' });
      for (let i = 0; i < 10; i++) expect(directIo(disk.path, 'write', i * 8).ok).toBe(true);
      const got = (await c.status()).filters.find((x) => x.id === f.id)!;
      expect(got.matchedIos).toBe('10');
    } finally {
      c.close();
    }
  });
});

