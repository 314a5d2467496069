// The agent image (scripts/build-image) run under podman exactly as
// deploy/kubernetes/daemonset.yaml runs it (tests/helpers/daemonset.ts reads the YAML):
// the CLI on the host reaches it, the attach self-test passes inside it, a filter scoped
// to another real container counts only that container's I/O, filters survive a
// restart, a stop is clean and a kill -9 leaves the filters to their TTL. Observe mode:
// this host's kernel has no error injection (the VM tier has real EIO).
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { IoFilterClient } from '../../client';
import * as native from '../../native';
import { freePort, ROOT } from '../helpers/common';
import { createLoop, directIo, LoopDevice } from '../helpers/loop';
import { AgentContainer, buildImage, podman, podmanUnavailableReason, RUNTIME, TEST_IMAGE, ulimitFlags, Workload } from '../helpers/podman';
import { BUILT, describeIf, hostUnavailableReason } from '../helpers/tier';
import { until } from '../helpers/wait';

const d = describeIf(hostUnavailableReason(BUILT.agent, BUILT.cli, BUILT.addon) ?? podmanUnavailableReason());
const CLI = path.join(ROOT, BUILT.cli);
const tag = `ctr-${process.pid}`;
const pinDir = `/sys/fs/bpf/iofilter-${tag}`;
const blkioOnV1 = () => fs.readFileSync('/proc/cgroups', 'utf8').split('\n').some((l) => /^blkio\s+[1-9]/.test(l));
const VERSION = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version;

function cli(address: string, ...args: string[]): { code: number; out: string } {
  const r = spawnSync(process.execPath, [CLI, '--host', address, '--timeout', '10s', ...args], { encoding: 'utf8' });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

/** Sectors written to `dev` so far (/sys/block/NAME/stat, field 7). */
const writtenSectors = (dev: LoopDevice) => Number(fs.readFileSync(`/sys/block/${path.basename(dev.path)}/stat`, 'utf8').trim().split(/\s+/)[6]);

d('the agent image under podman, run as the DaemonSet runs it (observe mode)', () => {
  let loop: LoopDevice;
  let agent: AgentContainer;
  let client: IoFilterClient;
  let a: Workload; // the container the filters target
  let b: Workload; // its neighbour on the same disk
  let stateDir: string;
  const matched = async (id: number) => Number((await client.status()).filters.find((f) => f.id === id)?.matchedIos ?? NaN);

  beforeAll(async () => {
    console.log(buildImage()); // cached by its inputs: seconds unless dist/ or the addon changed
    loop = createLoop(64);
    stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'iofilter-ctr-state-'));
    agent = new AgentContainer({ name: `iofilter-agent-${tag}`, port: await freePort(), pinDir, stateDir });
    agent.start();
    await agent.waitReady();
    client = new IoFilterClient(agent.address, { timeoutMs: 10_000 });
    a = new Workload(`iofilter-a-${tag}`, loop.path);
    b = new Workload(`iofilter-b-${tag}`, loop.path);
  }, 600_000);

  afterAll(async () => {
    try {
      if (agent?.state().status === 'running') {
        await client.clearFilters();
        await client.detach();
      }
    } finally {
      client?.close();
      a?.remove();
      b?.remove();
      agent?.remove();
      fs.rmSync(pinDir, { recursive: true, force: true });
      if (stateDir) fs.rmSync(stateDir, { recursive: true, force: true });
      loop?.detach();
    }
  }, 120_000);

  test('the image: iofilter-agent --version and --help, iofilterctl --help inside; a rebuild from scratch gives the same digests', () => {
    const run = (...args: string[]) => podman(['--runtime', RUNTIME, 'run', '--rm', '--network', 'none', ...ulimitFlags(), ...args]).out;
    expect(run(TEST_IMAGE, '--version')).toBe(VERSION);
    expect(run(TEST_IMAGE, '--help')).toMatch(/^Usage: iofilter-agent/);
    expect(run('--entrypoint', 'iofilterctl', TEST_IMAGE, '--help')).toMatch(/^Usage: iofilterctl/); // (it has no --version)
    // FROM scratch: two layers, Debian's libraries then the project's build, nothing pulled
    expect(JSON.parse(podman(['inspect', TEST_IMAGE, '--format', '{{json .RootFS.Layers}}']).out)).toHaveLength(2);

    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'iofilter-image-'));
    try {
      const cached = buildImage();
      const fresh = execFileSync(path.join(ROOT, 'scripts', 'build-image'), ['--no-cache', '--no-load', '--out', out], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 600_000 });
      const field = (report: string, name: string) => new RegExp(`^\\s+${name}:\\s+(.*)$`, 'm').exec(report)?.[1];
      expect(field(cached, 'build time')).toMatch(/^cached/);
      expect(field(fresh, 'layers')).toBe(field(cached, 'layers'));
      expect(field(fresh, 'image digest')).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(field(fresh, 'image digest')).toBe(field(cached, 'image digest'));
      expect(field(fresh, 'packages')).toMatch(/(^| )libbpf1=\S+ /);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  }, 300_000);

  test('the CLI on the host reaches the agent in the container; attach runs the self-test inside it and it passes', async () => {
    // it is the container's process that answers, not some agent on the host
    const { pid } = agent.state();
    expect(fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8')).toContain(podman(['inspect', agent.o.name, '--format', '{{.Id}}']).out);
    const st = cli(agent.address, 'status');
    expect(st).toMatchObject({ code: 0 });
    expect(st.out).toContain(`agent ${VERSION}`);
    const at = cli(agent.address, 'attach', '--mode', 'observe');
    expect(at).toMatchObject({ code: 0 });
    expect(at.out).toMatch(/attached observe/);
    // the scratch loop device was made through the container's /dev (the host's, bind-mounted)
    expect(cli(agent.address, 'status').out).toMatch(/self-test: passed at .*one O_DIRECT read of 4 KiB from scratch \/dev\/loop\d+ \(7:\d+\).*counted 1 matched/);
  });

  test("a filter scoped to another container (by --cgroup and by --pid) counts only that container's I/O", async () => {
    // as the README tells users: the container's main pid on the host, its "0::" cgroup line
    const aPath = a.cgroupPath();
    expect(aPath).toContain(a.id());
    const setA = cli(agent.address, 'set', loop.path, '--read', '--write', '--cgroup', aPath, '--ttl', '10m');
    expect(setA).toMatchObject({ code: 0 });
    const setB = cli(agent.address, 'set', loop.path, '--read', '--write', '--pid', String(b.pid()), '--ttl', '10m');
    expect(setB).toMatchObject({ code: 0 });
    const filters = (await client.status()).filters;
    expect(filters).toHaveLength(2);
    const fa = filters.find((f) => f.cgroup?.path === aPath)!;
    const fb = filters.find((f) => f.cgroup?.path === b.cgroupPath())!;
    expect(fa).toBeDefined();
    expect(fb?.cgroup).toMatchObject({ fromPid: b.pid() });
    expect(fa.cgroup!.id).not.toBe(fb.cgroup!.id);

    // direct I/O: one bio per 4 KiB dd block
    a.dd('read', 0, 3, { direct: true });
    a.dd('write', 10, 2, { direct: true });
    b.dd('read', 20, 4, { direct: true });
    directIo(loop.path, 'read', 8 * 30); // the host's own: neither container's
    expect(await matched(fa.id)).toBe(5);
    expect(await matched(fb.id)).toBe(4);

    // buffered read of blocks never read before: the container's task submits it (readahead may make it several bios)
    a.dd('read', 1000, 16);
    const aBuffered = await matched(fa.id);
    expect(aBuffered).toBeGreaterThan(5);
    // page-cache writeback the container starts itself (fsync runs writeback in its task)
    a.dd('write', 2000, 4, { fsync: true });
    const aFsync = await matched(fa.id);
    expect(aFsync).toBeGreaterThan(aBuffered);
    expect(await matched(fb.id)).toBe(4);

    // writeback of A's dirty pages flushed by the host: charged to A through cgroup
    // writeback on a cgroup v2 io host; on a hybrid host (blkio on v1, as this one) it is
    // the root's, as the README says (the agent warned so at set). The host holds the
    // device open meanwhile: else dd's close, the last one, writes the pages back itself.
    const before = writtenSectors(loop);
    const held = fs.openSync(loop.path, 'r');
    try {
      a.dd('write', 3000, 4);
      expect(writtenSectors(loop)).toBe(before); // still dirty in the page cache
      execFileSync('blockdev', ['--flushbufs', loop.path]);
    } finally {
      fs.closeSync(held);
    }
    expect(writtenSectors(loop) - before).toBeGreaterThanOrEqual(32); // the sentinel: the 16 KiB did reach the disk
    expect(/hybrid cgroup v1\/v2 layout with blkio on cgroup v1/.test(setA.out)).toBe(blkioOnV1());
    const wb = (await matched(fa.id)) - aFsync;
    expect(wb).toBeGreaterThanOrEqual(blkioOnV1() ? 0 : 1);
    expect(wb).toBeLessThanOrEqual(blkioOnV1() ? 0 : Infinity);
    expect(await matched(fb.id)).toBe(4); // the neighbour's filter saw none of it
  });

  test('filters pin across `podman restart`: adopted, same filters, counters intact', async () => {
    const before = (await client.status()).filters.map((f) => ({ id: f.id, cgroup: f.cgroup?.id, matchedIos: f.matchedIos }));
    expect(before).toHaveLength(2);
    podman(['restart', '-t', '30', agent.o.name]);
    await agent.waitReady();
    const st = await client.status();
    expect(st.state).toMatchObject({ attached: true, adopted: true });
    expect(st.filters.map((f) => ({ id: f.id, cgroup: f.cgroup?.id, matchedIos: f.matchedIos }))).toEqual(before);
    const fa = st.filters.find((f) => f.cgroup?.path === a.cgroupPath())!;
    a.dd('read', 40, 1, { direct: true }); // still counted, by the pinned program
    expect(await matched(fa.id)).toBe(Number(fa.matchedIos) + 1);
  }, 120_000);

  test('podman stop ends the agent cleanly (exit 0, pins stay); started again it adopts them', async () => {
    podman(['stop', '-t', '30', agent.o.name]);
    expect(agent.state()).toMatchObject({ status: 'exited', exitCode: 0 });
    expect(agent.logs()).toMatch(/2 pinned filter\(s\) stay in force/);
    expect(fs.readdirSync(pinDir).length).toBeGreaterThan(0);
    podman(['start', agent.o.name]);
    await agent.waitReady();
    const st = await client.status();
    expect(st.state?.adopted).toBe(true);
    expect(st.filters).toHaveLength(2);
  }, 120_000);

  test('kill -9 of the container leaves the pinned filters to their TTL, which the kernel enforces', async () => {
    await client.clearFilters();
    const ttlMs = 10_000;
    const f = await client.setFilter({ device: loop.path, wholeDeviceOps: ['OP_READ'], ttlMs });
    directIo(loop.path, 'read', 8 * 50);
    expect(await matched(f.id)).toBe(1);
    podman(['kill', '-s', 'KILL', agent.o.name]);
    await until(() => agent.state().status === 'exited', 'the container to exit', 30_000, 50);
    expect(agent.state().exitCode).toBe(137);
    directIo(loop.path, 'read', 8 * 51); // no agent: the pinned program counts it

    // read the pins the way a new agent would, without reaping them
    const lock = native.lock(pinDir);
    const pins = await native.adopt(lock);
    try {
      const key = { device: { major: loop.major, minor: loop.minor } };
      const live = pins!.getFilter(key)!;
      if (live.remainingMs === 0) throw new Error(`the read after the kill came more than ${ttlMs} ms after set: too slow a machine to tell`);
      expect(live.matchedIos).toBe(2n);
      await until(() => pins!.getFilter(key)!.remainingMs === 0, 'the TTL to run out', ttlMs + 60_000, 20);
      await new Promise((r) => setTimeout(r, 20)); // the program's clock may be one tick behind
      directIo(loop.path, 'read', 8 * 52);
      expect(pins!.getFilter(key)).toMatchObject({ matchedIos: 2n, remainingMs: 0 }); // expired: not counted
    } finally {
      pins?.close();
      lock.release();
    }
    podman(['start', agent.o.name]);
    await agent.waitReady();
    expect((await client.status()).state?.adopted).toBe(true);
    await until(async () => (await client.status()).filters.length === 0, 'the adopting agent to reap the expired filter', 10_000, 100);
    expect(agent.logs()).toMatch(/removed expired filters/);
  }, 180_000);

  describe('privileged: false with drop ALL (what the YAML comments claim)', () => {
    const variant = async (caps: string[], check: (address: string) => void | Promise<void>) => {
      const dir = `${pinDir}-caps`;
      const v = new AgentContainer({
        name: `iofilter-caps-${tag}`,
        port: await freePort(),
        pinDir: dir,
        stateDir,
        editPod: (pod) => (pod.containers[0].securityContext = { privileged: false, seccompProfile: { type: 'RuntimeDefault' }, capabilities: { drop: ['ALL'], add: caps } }),
      });
      try {
        expect(v.args()).toEqual(expect.arrayContaining(['--cap-drop', 'all']));
        expect(v.args()).not.toContain('--privileged');
        v.start();
        await v.waitReady();
        try {
          await check(v.address);
        } catch (e) {
          (e as Error).message += `\nagent log:\n${v.logs()}`;
          throw e;
        }
        cli(v.address, 'detach');
      } finally {
        v.remove();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    };

    test('SYS_ADMIN alone: attaches, but the device cgroup refuses the scratch loop device, so the hook stays UNPROVEN', async () => {
      await variant(['SYS_ADMIN'], (address) => {
        expect(cli(address, 'attach', '--mode', 'observe').out).toMatch(/attached observe/);
        expect(cli(address, 'status').out).toMatch(/self-test: UNPROVEN .*\/dev\/loop-control.*Operation not permitted/);
      });
    }, 120_000);

    test('BPF and PERFMON without SYS_ADMIN: no mode loads (libbpf cannot list the kernel BTF objects)', async () => {
      await variant(['BPF', 'PERFMON'], (address) => {
        const at = cli(address, 'attach', '--mode', 'observe');
        expect(at.code).not.toBe(0);
        expect(at.out).toMatch(/FAILED_PRECONDITION: mode observe is not available.*Operation not permitted/);
      });
    }, 120_000);
  });
});
