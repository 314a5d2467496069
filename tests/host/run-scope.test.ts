// `iofilterctl run` with file targets and cgroup scopes, as a subprocess against real
// agents (observe mode, own ports, pin dirs and audit logs): cgroups made under this
// host's cgroup2 mount (on a hybrid v1/v2 host, the v2 one: the agent's own resolver
// finds it), a file on ext4 on a loop partition. A plan that finishes and one aborted by
// SIGINT leave no filter on any host (Status), and their cleanup events and the agents'
// audit logs show what was deleted: by device and cgroup id, never by pid (the pid's
// process is killed before the cleanup). A scoped and an unscoped filter on one device
// are both deleted; an unscoped filter the test set before a run that used only a
// scoped one survives it. Needs root, loop devices, cgroup2, e2fsprogs, `npm run build`.
import { ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CgroupResolver } from '../../agent/cgroup';
import { IoFilterClient } from '../../client';
import type { Filter__Output } from '../../proto/gen/iofilter/v1/Filter';
import { RunningAgent, startAgent } from '../helpers/agent';
import { createLoop, LoopDevice } from '../helpers/loop';
import { ctl, ctlInterruptedAt, Event } from '../helpers/run-ctl';
import { BUILT, describeIf, hostUnavailableReason } from '../helpers/tier';

function unavailable(): string | null {
  const host = hostUnavailableReason(BUILT.agent, BUILT.cli);
  if (host) return host;
  try {
    new CgroupResolver().mount();
  } catch (e) {
    return `no usable cgroup2 mount: ${(e as Error).message}`;
  }
  const missing = ['mkfs.ext4', 'mount', 'umount', 'dd'].filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
  return missing.length ? `missing tools: ${missing.join(', ')} (e2fsprogs, util-linux, coreutils)` : null;
}
const d = describeIf(unavailable());

const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const ino = (p: string) => sh('stat', ['-c', '%i', p]).trim();
const lines = (f: string) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8').split('\n').filter(Boolean) : []);
/** A filter as "MAJ:MIN file cgroup-id": what it targets and its scope. */
const where = (f: Filter__Output) => `${f.device!.major}:${f.device!.minor} ${f.file || '-'} ${f.cgroup?.id ?? '-'}`;

d('iofilterctl run with files and cgroup scopes against real agents', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-run-scope-'));
  const mnt = path.join(tmp, 'ext4');
  const pinDir = (i: number) => `/sys/fs/bpf/iofilter-run-scope-test-${process.pid}-${i}`;
  const audit = (i: number) => path.join(tmp, `audit-${i}.jsonl`);
  const cg = new CgroupResolver().mount().dir; // e.g. /sys/fs/cgroup/unified on a hybrid host
  const rel = `/iofilter-run-scope-test-${process.pid}`;
  const agents: RunningAgent[] = [];
  const sleeps: ChildProcess[] = [];
  let disk: LoopDevice;
  let hosts: string[];
  let diskNo: string;
  let partNo: string[];
  let file: string;
  let idA: string;
  let idB: string;
  let mounted = false;
  let planNo = 0;

  const plan = (text: string) => {
    const f = path.join(tmp, `plan-${++planNo}.yaml`);
    fs.writeFileSync(f, text);
    return f;
  };
  const filters = async (address: string) => {
    const c = new IoFilterClient(address, { timeoutMs: 5000 });
    try {
      return (await c.status()).filters;
    } finally {
      c.close();
    }
  };
  const filtersOn = async (address: string) => (await filters(address)).map(where).sort();
  /** A `sleep` moved into the cgroup `dir`; resolves its pid. */
  const sleepIn = async (dir: string) => {
    const p = spawn('sleep', ['600'], { stdio: 'ignore' });
    sleeps.push(p);
    await new Promise((r) => p.once('spawn', r));
    fs.writeFileSync(path.join(dir, 'cgroup.procs'), String(p.pid));
    return p;
  };
  const kill = (p: ChildProcess) => (p.exitCode === null && p.signalCode === null ? new Promise((r) => p.once('exit', r).kill('SIGKILL')) : null);
  /** The DeleteFilter requests agent i audited since line `from`, as [device, cgroupPath, cgroupId, pid, id]. */
  const deletes = (i: number, from: number) =>
    lines(audit(i))
      .slice(from)
      .map((l) => JSON.parse(l))
      .filter((a) => a.rpc === 'DeleteFilter')
      .map((a) => [a.request.device, a.request.cgroupPath, a.request.cgroupId, a.request.pid, a.request.id]);
  const cleanupOf = (events: Event[], host: string) => events.find((e) => e.event === 'host' && e.action === 'delete' && e.host === host);

  beforeAll(async () => {
    disk = createLoop(48, [16, 24]);
    diskNo = `${disk.major}:${disk.minor}`;
    partNo = disk.partitions.map((p) => `${p.major}:${p.minor}`);
    // eager init: no background writes; the file's blocks are on disk when dd returns
    sh('mkfs.ext4', ['-q', '-F', '-b', '4096', '-E', 'lazy_itable_init=0,lazy_journal_init=0', disk.partitions[1].path]);
    fs.mkdirSync(mnt);
    sh('mount', [disk.partitions[1].path, mnt]);
    mounted = true;
    file = path.join(mnt, 'db');
    sh('dd', ['if=/dev/urandom', `of=${file}`, 'bs=4096', 'count=4', 'oflag=direct', 'status=none']);
    for (const sub of ['', 'a', 'b']) fs.mkdirSync(path.join(cg, rel, sub));
    idA = ino(path.join(cg, rel, 'a'));
    idB = ino(path.join(cg, rel, 'b'));
    for (let i = 0; i < 2; i++) agents.push(await startAgent({ pinDir: pinDir(i), attach: 'observe', args: ['--audit-log', audit(i)] }));
    hosts = agents.map((a) => a.address);
  });
  afterAll(async () => {
    for (const a of agents) {
      const c = new IoFilterClient(a.address, { timeoutMs: 5000 });
      await c.detach().catch(() => undefined);
      c.close();
      await a.stop();
    }
    for (let i = 0; i < 2; i++) fs.rmSync(pinDir(i), { recursive: true, force: true });
    await Promise.all(sleeps.map(kill));
    for (const sub of ['a', 'b', '']) if (fs.existsSync(path.join(cg, rel, sub))) fs.rmdirSync(path.join(cg, rel, sub));
    if (mounted) spawnSync('umount', [mnt]);
    disk?.detach();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('a plan with a cgroup, a file and a pid that finishes: in force while held, then all deleted by device and cgroup id - the pid gone by then', async () => {
    const sleeper = await sleepIn(path.join(cg, rel, 'b'));
    const pid = sleeper.pid!;
    const release = path.join(tmp, 'finish.release');
    const check = path.join(tmp, 'finish.sh');
    // the last step's checks wait until the test has looked at the agents and killed the sleep
    fs.writeFileSync(check, `#!/bin/sh\n[ "$IOFILTER_STEP" = everyone ] && while [ ! -f ${release} ]; do sleep 0.05; done; exit 0\n`, { mode: 0o755 });
    const audited = [0, 1].map((i) => lines(audit(i)).length);
    let during: string[][] | undefined;
    const r = await ctl(
      [
        'run',
        plan(`hosts: [${hosts.join(', ')}]
check: { command: ${check}, every: 10s }
steps:
  - name: canary
    hosts: 1
    set: { device: ${disk.path}, cgroup: ${rel}/a, ops: [write] }
    hold: 200ms
  - name: everyone
    hosts: all
    set: [{ file: ${file}, ops: [read] }, { device: ${disk.path}, pid: ${pid}, ops: [read] }]
    hold: 200ms
`),
      ],
      async (e) => {
        if (e.event === 'hold' && e.step === 'everyone') {
          during = await Promise.all(hosts.map(filtersOn));
          await kill(sleeper); // deleting by pid now would fail: no such process
          fs.writeFileSync(release, '');
        }
      },
    );
    expect(r.stderr).toMatch(/^finished 2 steps; \d+ checks; cleanup on 2 hosts: 2 ok, 0 failed, 0 unreachable .*exit 0\)$/m);
    expect(r.code).toBe(0);
    const atA = `${diskNo} - ${idA}`;
    const ofFile = `${partNo[1]} ${file} -`;
    const atB = `${diskNo} - ${idB}`;
    expect(during).toEqual([[atA, ofFile, atB].sort(), [ofFile, atB].sort()]);
    // the set lines carry the scope as the agent resolved it
    const sets = r.events.filter((e) => e.event === 'host' && e.action === 'set' && e.step === 'everyone');
    expect(sets).toHaveLength(2);
    for (const e of sets) expect(e.value.map((f: Filter__Output) => [f.file, f.cgroup])).toEqual([[file, null], ['', { id: idB, path: `${rel}/b`, fromPid: pid }]]);
    const named = { a: `${disk.path} (cgroup ${rel}/a)`, pid: `${disk.path} (the cgroup of pid ${pid})` };
    expect(cleanupOf(r.events, hosts[0])).toMatchObject({
      ok: true,
      value: [
        { filter: named.a, device: diskNo, scope: `cgroup id ${idA}`, existed: true },
        { filter: named.pid, device: diskNo, scope: `cgroup id ${idB}`, existed: true },
        { filter: file, device: partNo[1], existed: true },
      ],
    });
    expect(cleanupOf(r.events, hosts[1]).value).toEqual([
      { filter: named.pid, device: diskNo, scope: `cgroup id ${idB}`, existed: true },
      { filter: file, device: partNo[1], existed: true },
    ]);
    expect(r.events[r.events.length - 1]).toMatchObject({ event: 'finished', stepsDone: 2, touched: 2, remaining: [] });
    for (const h of hosts) expect(await filtersOn(h)).toEqual([]);
    // what the agents were asked to delete: numbers and cgroup ids, no path, no pid; scoped
    // filters first, the unscoped one by the id its set answered with
    const fileId = hosts.map((h) => sets.find((e) => e.host === h).value.find((f: Filter__Output) => f.file).id);
    expect(deletes(0, audited[0])).toEqual([[diskNo, '', idA, 0, 0], [diskNo, '', idB, 0, 0], ['', '', '0', 0, fileId[0]]]);
    expect(deletes(1, audited[1])).toEqual([[diskNo, '', idB, 0, 0], ['', '', '0', 0, fileId[1]]]);
  });

  test('SIGINT while the last step holds: cleanup on both hosts names each file and scope it deleted; no filter left', async () => {
    const r = await ctlInterruptedAt('everyone', [
      'run',
      plan(`hosts: [${hosts.join(', ')}]
check: { command: "true", every: 2s }
steps:
  - { name: canary, hosts: 1, set: { file: ${file}, cgroup: ${path.join(cg, rel, 'a')}, ops: [write] }, hold: 200ms }
  - name: everyone
    set: [{ device: ${disk.partitions[0].path}, cgroupId: ${idB}, ops: [read] }, { file: ${file}, ops: [read] }]
    hold: 60s
`),
    ]);
    expect(r.sent).toBe(true);
    expect(r.code).toBe(8);
    expect(r.events.find((e) => e.event === 'abort')).toEqual({ event: 'abort', step: 'everyone', cause: 'signal', reason: 'interrupted (SIGINT)' });
    const scoped = { filter: `${file} (cgroup ${path.join(cg, rel, 'a')})`, device: partNo[1], scope: `cgroup id ${idA}`, existed: true };
    const byId = { filter: `${disk.partitions[0].path} (cgroup id ${idB})`, device: partNo[0], scope: `cgroup id ${idB}`, existed: true };
    const whole = { filter: file, device: partNo[1], existed: true };
    expect(cleanupOf(r.events, hosts[0]).value).toEqual([scoped, byId, whole]); // scoped filters first
    expect(cleanupOf(r.events, hosts[1]).value).toEqual([byId, whole]);
    expect(r.events[r.events.length - 1]).toMatchObject({ event: 'aborted', stepsDone: 1, cleanup: { ok: 2, failed: 0, unreachable: 0 }, remaining: [] });
    for (const h of hosts) expect(await filtersOn(h)).toEqual([]);
  });

  test('a scoped and an unscoped filter on one device in one step: both deleted', async () => {
    const dev = disk.partitions[0].path;
    const r = await ctl(['run', plan(`hosts: [${hosts.join(', ')}]\nsteps:\n  - set: [{ device: ${dev}, ops: [write] }, { device: ${dev}, cgroup: ${rel}/a, ops: [write] }]\n`)]);
    expect(r.code).toBe(0);
    const sets = r.events.filter((e) => e.event === 'host' && e.action === 'set');
    expect(sets.map((e) => e.value.map(where))).toEqual(hosts.map(() => [`${partNo[0]} - -`, `${partNo[0]} - ${idA}`]));
    for (const h of hosts)
      expect(cleanupOf(r.events, h).value).toEqual([
        { filter: `${dev} (cgroup ${rel}/a)`, device: partNo[0], scope: `cgroup id ${idA}`, existed: true },
        { filter: dev, device: partNo[0], existed: true },
      ]);
    for (const h of hosts) expect(await filtersOn(h)).toEqual([]);
  });

  test("an unscoped filter set before a run that only used a scoped one on its device survives the run's cleanup", async () => {
    const dev = disk.partitions[0].path;
    const before: Filter__Output[] = [];
    for (const h of hosts) {
      const c = new IoFilterClient(h, { timeoutMs: 5000 });
      before.push(await c.setFilter({ device: dev, wholeDeviceOps: ['OP_WRITE'], ttlMs: 600_000 }));
      c.close();
    }
    const r = await ctl(['run', plan(`hosts: [${hosts.join(', ')}]\nsteps:\n  - set: { device: ${dev}, cgroup: ${rel}/a, ops: [read] }\n    hold: 100ms\n`)]);
    expect(r.code).toBe(0);
    for (const h of hosts) expect(cleanupOf(r.events, h).value).toEqual([{ filter: `${dev} (cgroup ${rel}/a)`, device: partNo[0], scope: `cgroup id ${idA}`, existed: true }]);
    for (const [i, h] of hosts.entries()) {
      const left = await filters(h);
      expect(left.map((f) => [f.id, where(f), f.ranges.map((x) => x.ops)])).toEqual([[before[i].id, `${partNo[0]} - -`, [['OP_WRITE']]]]);
      const c = new IoFilterClient(h, { timeoutMs: 5000 });
      expect(await c.deleteFilter(dev)).toMatchObject({ existed: true });
      c.close();
    }
  });
});
