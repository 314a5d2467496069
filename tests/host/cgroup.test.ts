// Cgroup scopes on this host's real cgroup v2 tree (root): cgroups made under the
// cgroup2 mount, sleeps moved into them, resolution by path, relative path, id and pid
// (also from inside a private cgroup namespace), checked against `stat -c %i` and the
// tree; the warnings this host's controllers call for; refusals. Then SetFilter
// through an in-process agent with this host's sysfs and protected devices (the filter
// table is the fake kernel's: the addon's is not needed to prove the scope).
import { ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { status } from '@grpc/grpc-js';
import pino from 'pino';
import { CgroupResolver, Cgroup2Mount } from '../../agent/cgroup';
import { resolveConfig } from '../../agent/config';
import { Agent, createAgent } from '../../agent/server';
import { IoFilterClient } from '../../client';
import { Io, runCli } from '../../client/cli';
import { fakeKernel } from '../helpers/fake-kernel';
import { createLoop, loopUnavailableReason, LoopDevice } from '../helpers/loop';
import { builtReason, BUILT as BUILT_AGENT, describeIf } from '../helpers/tier';
import { RunningAgent, startAgent } from '../helpers/agent';
import { ROOT } from '../helpers/common';
import { refusal } from '../helpers/refusal';

const resolver = new CgroupResolver();
const BUILT = path.join(ROOT, 'dist', 'agent', 'cgroup.js');

function unavailable(): string | null {
  const loop = loopUnavailableReason();
  if (loop) return loop;
  try {
    resolver.mount();
  } catch (e) {
    return `no usable cgroup2 mount: ${(e as Error).message}`;
  }
  if (spawnSync('unshare', ['--help']).status !== 0) return 'no unshare(1) (util-linux)';
  return builtReason('dist/agent/cgroup.js'); // the namespace test runs it
}
const d = describeIf(unavailable());

const ino = (p: string) => BigInt(execFileSync('stat', ['-c', '%i', p], { encoding: 'utf8' }).trim());
const words = (f: string) => fs.readFileSync(f, 'utf8').split(/\s+/).filter(Boolean);
/** Whether blkio is bound to a cgroup v1 hierarchy, from /proc/cgroups (hierarchy id > 0). */
const blkioOnV1 = () => fs.readFileSync('/proc/cgroups', 'utf8').split('\n').some((l) => /^blkio\s+[1-9]/.test(l));
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * The warnings a scope on `rel` should get, from the tree's own files and /proc/cgroups
 * (not from the resolver under test): one per controller it lacks.
 */
function expectedWarnings(mount: string, rel: string): unknown[] {
  const root = words(path.join(mount, 'cgroup.controllers'));
  if (!root.includes('io'))
    return [expect.stringMatching(new RegExp(`^${blkioOnV1() ? 'this host runs a hybrid cgroup v1/v2 layout with blkio on cgroup v1' : 'the io controller is not available on cgroup v2'} .*tasks of ${esc(rel)} can match`))];
  const own = words(path.join(mount, rel, 'cgroup.controllers'));
  const out: unknown[] = [];
  if (!root.includes('memory')) out.push(expect.stringMatching(/^the memory controller is not on cgroup v2/));
  for (const ctl of root.includes('memory') ? ['io', 'memory'] : ['io'])
    if (!own.includes(ctl)) out.push(expect.stringMatching(new RegExp(`^the ${ctl} controller is not enabled for ${esc(rel)}[ :]`)));
  return out;
}


d('cgroup scopes on this host (root)', () => {
  let m: Cgroup2Mount;
  let base: string; // <mount>/iofilter-test-<pid>
  let rel: string; // /iofilter-test-<pid>
  const sleeps: ChildProcess[] = [];

  const sleepIn = async (dir: string) => {
    const p = spawn('sleep', ['600'], { stdio: 'ignore' });
    sleeps.push(p);
    await new Promise((r) => p.once('spawn', r));
    fs.writeFileSync(path.join(dir, 'cgroup.procs'), String(p.pid));
    return p.pid!;
  };

  beforeAll(() => {
    m = resolver.mount();
    rel = `/iofilter-test-${process.pid}`;
    base = path.join(m.dir, rel);
    for (const sub of ['', 'a', 'a/b', 'c']) fs.mkdirSync(path.join(base, sub));
  });
  afterAll(async () => {
    await Promise.all(sleeps.map((p) => (p.exitCode === null && p.signalCode === null ? new Promise((r) => p.once('exit', r).kill('SIGKILL')) : null)));
    for (const sub of ['a/b', 'a', 'c', 'gone', '']) if (fs.existsSync(path.join(base, sub))) fs.rmdirSync(path.join(base, sub));
  });

  test('the mount is cgroup2fs; a v1 blkio hierarchy is reported exactly when /proc/cgroups binds blkio to v1', () => {
    expect(execFileSync('stat', ['-f', '-c', '%T', m.dir], { encoding: 'utf8' }).trim()).toBe('cgroup2fs');
    expect(m.nsDepth).toBe(0);
    expect(m.blkioV1 !== null).toBe(blkioOnV1());
    console.log(`cgroup2 at ${m.dir}; blkio on v1: ${m.blkioV1 ?? 'no'}; root controllers: ${words(path.join(m.dir, 'cgroup.controllers')).join(' ') || '(none)'}`);
  });

  test('by absolute path, relative path and the root: ids are the directories inode numbers, levels the depth', () => {
    expect(resolver.resolve({ path: path.join(base, 'a') })).toEqual({ id: ino(path.join(base, 'a')), level: 2, path: `${rel}/a` });
    expect(resolver.resolve({ path: `${rel}/a/b` })).toEqual({ id: ino(path.join(base, 'a/b')), level: 3, path: `${rel}/a/b` });
    expect(resolver.resolve({ path: rel.slice(1) })).toEqual({ id: ino(base), level: 1, path: rel });
    expect(resolver.resolve({ path: '/' })).toEqual({ id: ino(m.dir), level: 0, path: '/' });
    expect(ino(m.dir)).toBe(1n); // the root cgroup's id
  });

  test('by id: the walk finds the cgroup', () => {
    expect(resolver.resolve({ id: ino(path.join(base, 'a/b')) })).toEqual({ id: ino(path.join(base, 'a/b')), level: 3, path: `${rel}/a/b` });
    expect(resolver.resolve({ id: 1n }).path).toBe('/');
  });

  test('by pid: the cgroup the process is in, as /proc/PID/cgroup says', async () => {
    const pid = await sleepIn(path.join(base, 'a/b'));
    expect(fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8')).toContain(`0::${rel}/a/b\n`);
    expect(resolver.resolve({ pid })).toEqual({ id: ino(path.join(base, 'a/b')), level: 3, path: `${rel}/a/b`, fromPid: pid });
  });

  test('by pid from inside a private cgroup namespace rooted at a/: the same cgroups', async () => {
    const inB = await sleepIn(path.join(base, 'a/b'));
    const inC = await sleepIn(path.join(base, 'c'));
    const script = `
      const { CgroupResolver } = require(${JSON.stringify(BUILT)});
      const r = new CgroupResolver();
      const out = { self: require('fs').readFileSync('/proc/self/cgroup', 'utf8'), mount: r.mount(), b: r.resolve({ pid: ${inB} }), c: r.resolve({ pid: ${inC} }) };
      console.log(JSON.stringify(out, (k, v) => (typeof v === 'bigint' ? String(v) : v)));`;
    // the shell moves itself into a/, then unshare makes a/ its cgroup namespace root
    const out = JSON.parse(execFileSync('sh', ['-c', 'echo $$ > "$1/cgroup.procs" && exec unshare -C "$2" -e "$3"', 'sh', path.join(base, 'a'), process.execPath, script], { encoding: 'utf8' }));
    expect(out.self).toContain('0::/\n'); // it is at its namespace's root
    expect(out.mount).toMatchObject({ dir: m.dir, nsDepth: 2 });
    expect(out.b).toEqual({ id: String(ino(path.join(base, 'a/b'))), level: 3, path: `${rel}/a/b`, fromPid: inB });
    expect(out.c).toEqual({ id: String(ino(path.join(base, 'c'))), level: 2, path: `${rel}/c`, fromPid: inC });
    // what the namespace showed it: relative to a/
    expect(fs.readFileSync(`/proc/${inC}/cgroup`, 'utf8')).toContain(`0::${rel}/c\n`);
  });

  test('warnings: what this host\'s controllers call for', () => {
    const root = words(path.join(m.dir, 'cgroup.controllers'));
    const a = resolver.resolve({ path: `${rel}/a` });
    const w = resolver.warnings(a);
    console.log(`warnings for ${a.path} on this host:\n  ${w.join('\n  ') || '(none)'}`);
    if (!root.includes('io')) {
      // io is not on cgroup v2 here: the hybrid warning if blkio is on v1, else "not available"
      expect(w).toEqual([blkioOnV1() ? expect.stringMatching(/^this host runs a hybrid cgroup v1\/v2 layout with blkio on cgroup v1/) : expect.stringMatching(/^the io controller is not available on cgroup v2/)]);
      return;
    }
    // io is on v2: a/ has it iff iofilter-test-<pid>/ enables it for its children (it does not, fresh)
    expect(words(path.join(base, 'a', 'cgroup.controllers')).includes('io')).toBe(false);
    expect(w[0]).toMatch(new RegExp(`^the io controller is not enabled for ${rel}/a .*charged to ${rel}, the nearest ancestor`));
    fs.writeFileSync(path.join(base, 'cgroup.subtree_control'), '+io');
    expect(resolver.warnings(a).filter((x) => /io controller/.test(x))).toEqual([]);
  });

  test('refusals: no such path, "..", a file, outside the mount, a gone id, a gone pid', async () => {
    fs.mkdirSync(path.join(base, 'gone'));
    const goneId = ino(path.join(base, 'gone'));
    fs.rmdirSync(path.join(base, 'gone'));
    const gonePid = await new Promise<number>((r) => {
      const p = spawn('true');
      p.once('exit', () => r(p.pid!));
    });
    expect(refusal(() => resolver.resolve({ path: `${rel}/nope` }))).toMatchObject({ code: 'NOT_FOUND', message: expect.stringMatching(/no cgroup /) });
    expect(refusal(() => resolver.resolve({ path: `${rel}/a/../c` }))).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/must not contain "\.\."/) });
    expect(refusal(() => resolver.resolve({ path: `${rel}/cgroup.procs` }))).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/is not a cgroup directory/) });
    expect(refusal(() => resolver.resolve({ path: '/sys/kernel' }))).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/is outside the cgroup2 mount/) });
    expect(refusal(() => resolver.resolve({ id: goneId }))).toMatchObject({ code: 'NOT_FOUND', message: `cgroup_id: ${goneId}: no cgroup with this id under ${m.dir}` });
    expect(refusal(() => resolver.resolve({ pid: gonePid }))).toMatchObject({ code: 'NOT_FOUND', message: expect.stringMatching(/no such process/) });
  });

  describe('SetFilter with a scope, through an agent (this host\'s sysfs and protected devices; fake filter table)', () => {
    let agent: Agent;
    let client: IoFilterClient;
    let loop: LoopDevice;
    const kernel = fakeKernel();
    beforeAll(async () => {
      loop = createLoop(8);
      const cfg = resolveConfig({ listen: '127.0.0.1:0', attach: 'observe', pinDir: '/sys/fs/bpf/unused' });
      agent = await createAgent(cfg, pino({ level: 'silent' }), kernel);
      client = new IoFilterClient(agent.address);
    });
    afterAll(async () => {
      client?.close();
      await agent?.stop(1000);
      loop?.detach();
    });

    test('--pid: the filter carries the cgroup (id, path, pid) and the warnings this host calls for', async () => {
      const pid = await sleepIn(path.join(base, 'a/b'));
      const r = await client.setFilterResponse({ device: loop.path, wholeDeviceOps: ['OP_WRITE'], pid });
      expect(r.filter!.cgroup).toEqual({ id: String(ino(path.join(base, 'a/b'))), path: `${rel}/a/b`, fromPid: pid });
      expect(r.warnings).toEqual(expectedWarnings(m.dir, `${rel}/a/b`));
      expect(r.warnings.length).toBeGreaterThan(0); // a/b never gets io enabled for it here
      expect(kernel.filterer!.specs.at(-1)!.cgroup).toEqual({ id: ino(path.join(base, 'a/b')), level: 3 });
      expect((await client.status()).filters.map((f) => f.cgroup?.path)).toEqual([`${rel}/a/b`]);
    });

    test('iofilterctl set --cgroup prints the scope and each warning as a host: warning: line', async () => {
      const io: Io & { o: string } = { o: '', out: (s) => void (io.o += s), err: () => undefined, stdoutTty: false, stderrTty: false };
      expect(await runCli(['--host', agent.address, 'set', loop.path, '--read', '--cgroup', path.join(base, 'c')], io)).toBe(0);
      const lines = io.o.trim().split('\n');
      const c = resolver.resolve({ path: `${rel}/c` });
      expect(lines[0]).toMatch(new RegExp(`^${agent.address}: set ${path.basename(loop.path)} \\(${loop.major}:${loop.minor}\\), cgroup ${rel}/c \\(id ${c.id}\\): whole device read; `));
      expect(lines.slice(1).map((l) => l.replace(`${agent.address}: warning: `, ''))).toEqual(expectedWarnings(m.dir, `${rel}/c`));
      expect(lines.slice(1).every((l) => l.startsWith(`${agent.address}: warning: `))).toBe(true);
    });

    const rootDev = execFileSync('findmnt', ['-n', '-o', 'MAJ:MIN', '--target', '/'], { encoding: 'utf8' }).trim();
    describeIf(rootDev.startsWith('0:') ? `/ is not on a block device here (${rootDev}): nothing is protected to test` : null)('the device holding /', () => {
      test('stays protected whatever the scope', async () => {
        const before = kernel.filterer!.puts;
        const err = await client.setFilter({ device: rootDev, wholeDeviceOps: ['OP_READ'], cgroupPath: `${rel}/a` }).catch((e) => e);
        expect(status[err.code]).toBe('FAILED_PRECONDITION');
        expect(err.details).toMatch(/is protected: .*holds \//);
        expect(kernel.filterer!.puts).toBe(before);
      });
    });
  });

  // The addon's own table and BPF program (observe mode on this host's hook): the scope
  // is judged in the kernel by iof_cgroup_under, counted per bio of direct I/O.
  describeIf(builtReason(BUILT_AGENT.agent, BUILT_AGENT.addon))('a real agent in observe mode', () => {
    let agent: RunningAgent;
    let client: IoFilterClient;
    let loop: LoopDevice;
    const pinDir = `/sys/fs/bpf/iofilter-cgroup-test-${process.pid}`;
    const ctl = async (...argv: string[]) => {
      const io: Io & { o: string } = { o: '', out: (x) => void (io.o += x), err: () => undefined, stdoutTty: false, stderrTty: false };
      const code = await runCli(['--host', agent.address, ...argv], io);
      return { code, out: io.o };
    };
    /** `n` direct 4 KiB writes (one bio each) by a dd moved into `dir` before it execs. */
    const writesIn = (dir: string, n: number) =>
      execFileSync('sh', ['-c', 'echo $$ > "$1/cgroup.procs" && exec dd if=/dev/zero of="$2" bs=4096 count="$3" oflag=direct status=none', 'sh', dir, loop.path, String(n)]);
    beforeAll(async () => {
      loop = createLoop(8);
      agent = await startAgent({ pinDir, attach: 'observe' });
      client = new IoFilterClient(agent.address);
    });
    afterAll(async () => {
      client?.close();
      await agent?.kill('SIGKILL');
      fs.rmSync(pinDir, { recursive: true, force: true });
      loop?.detach();
    });

    test('a filter scoped to a/ counts exactly the bios of a/b (a descendant), none of c/ or the root', async () => {
      const f = await client.setFilter({ device: loop.path, wholeDeviceOps: ['OP_WRITE'], cgroupPath: `${rel}/a`, ttlMs: '600000' });
      writesIn(path.join(base, 'a/b'), 7);
      writesIn(path.join(base, 'c'), 5);
      writesIn(m.dir, 3);
      writesIn(path.join(base, 'a'), 2);
      const st = (await client.status()).filters.find((x) => x.id === f.id)!;
      expect(st.matchedIos).toBe('9');
    });

    test('delete DEV while the scoped filter is on it: exit 2, the scope and its flags named, nothing deleted; --cgroup then deletes it', async () => {
      const before = (await client.status()).filters.map((x) => x.id);
      expect(before).toHaveLength(1);
      const r = await ctl('delete', loop.path);
      expect(r.code).toBe(2);
      expect(r.out).toContain(
        `error FAILED_PRECONDITION: ${loop.path} has a cgroup-scoped filter that a delete without a scope would leave in force; nothing was deleted: ` +
          `filter ${before[0]} for cgroup ${rel}/a (delete it with --cgroup ${rel}/a or --id ${before[0]}). --all-scopes deletes every filter on ${loop.path}`,
      );
      expect((await client.status()).filters.map((x) => x.id)).toEqual(before);
      expect(await ctl('delete', loop.path, '--cgroup', `${rel}/a`)).toMatchObject({ code: 0, out: `${agent.address}: deleted filter on ${loop.path} for cgroup ${rel}/a\n` });
      expect((await client.status()).filters).toEqual([]);
      expect(await ctl('delete', loop.path)).toMatchObject({ code: 0, out: `${agent.address}: no filter on ${loop.path}\n` });
    });

    test("a plan's cleanup deletes its own unscoped and scoped filters and leaves another's scope on the device", async () => {
      const other = await client.setFilter({ device: loop.path, wholeDeviceOps: ['OP_READ'], cgroupPath: `${rel}/c`, ttlMs: '600000' });
      const plan = path.join(os.tmpdir(), `iofilter-plan-${process.pid}.yaml`);
      fs.writeFileSync(plan, `steps:\n  - set: [{ device: ${loop.path}, ops: [write] }, { device: ${loop.path}, cgroup: ${rel}/a, ops: [write] }]\n    hold: 10ms\n`);
      try {
        const r = await ctl('run', plan);
        expect(r).toMatchObject({ code: 0 });
        expect(r.out).toMatch(/\[cleanup\] deleted filter on \d+:\d+, cgroup id \d+: /);
        expect(r.out).toMatch(/\[cleanup\] deleted filter on \d+:\d+: /);
      } finally {
        fs.rmSync(plan, { force: true });
      }
      expect((await client.status()).filters.map((x) => x.id)).toEqual([other.id]);
      await client.deleteFilter({ device: loop.path, allScopes: true });
    });
  });
});
