// The blkinject backend against an in-memory kernel (tests/helpers/fake-blkinject.ts):
// the capability and its reasons, partition offsets, filters sharing a disk (a new one
// only adds; a delete rebuilds), the record written before the kernel is touched, the
// list read back and a failed change undone, a crash mid-change finished by the next
// owner, TTLs, a new medium or a vanished disk, and every refusal leaving the list as
// it was. The service picks it (auto) for statuses other than EIO.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import type * as native from '../../native';
import { BlkinjectBackend } from '../../agent/backends/blkinject/backend';
import { probeBlkinject } from '../../agent/backends/blkinject/capability';
import { Clock, DM_ID_BASE, StateDir } from '../../agent/backends/dm/state';
import { resolveConfig } from '../../agent/config';
import { DeviceInfo, resolveDevice } from '../../agent/devices';
import { EIO, FaultSpec } from '../../agent/faults';
import { IoFilterCore } from '../../agent/service';
import { errorStatus } from '../../proto/faults';
import { FakeBlkInjection, fakeSysfs, setDiskseq } from '../helpers/fake-blkinject';
import { fakeKernel } from '../helpers/fake-kernel';
import { refusalOf } from '../helpers/refusal';

let now = 1_000_000;
let boot = 'boot-a';
const clock: Clock = { bootId: () => boot, boottimeMs: () => now, realtimeMs: () => 1_700_000_000_000 + now };
const NOSPC: FaultSpec = { kind: 'error', status: errorStatus('enospc')! };
const MEDIUM: FaultSpec = { kind: 'error', status: errorStatus('enodata')! };

/** A debugfs tree with loop0's error_injection file, and a mounts file naming it. */
function fakeDebugfs(files = true): { debugfs: string; mounts: string } {
  const debugfs = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-debugfs-'));
  fs.mkdirSync(path.join(debugfs, 'block', 'loop0'), { recursive: true });
  if (files) fs.writeFileSync(path.join(debugfs, 'block', 'loop0', 'error_injection'), '');
  const mounts = path.join(debugfs, 'mounts');
  fs.writeFileSync(mounts, `sysfs /sys sysfs rw 0 0\ndebugfs ${debugfs} debugfs rw,relatime 0 0\n`);
  return { debugfs, mounts };
}

function setup() {
  const kernel = new FakeBlkInjection();
  kernel.add('loop0');
  const sysfs = fakeSysfs([{ name: 'loop0', minor: 0, size: 8192, parts: [{ start: 2048, size: 2048 }, { start: 4096, size: 2048 }] }]);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-blk-state-'));
  const state = new StateDir(dir);
  const { debugfs, mounts } = fakeDebugfs();
  const faults: number[] = [];
  const mk = () =>
    new BlkinjectBackend({ state, clock, release: '7.2.13', log: pino({ level: 'silent' }), sysfs, debugfs, files: kernel, probeEnv: { mounts, lockdown: '/nonexistent' }, onFault: () => faults.push(1) });
  const b = mk();
  const dev = (d: string) => resolveDevice(d, sysfs);
  return { kernel, sysfs, dir, state, b, dev, faults, mk, list: () => kernel.read('loop0').trim() };
}

function spec(dev: DeviceInfo, ranges: { start: bigint; end: bigint; ops: native.Op[] }[], extra: Partial<native.FilterSpec> = {}): native.FilterSpec {
  return { device: { major: dev.major, minor: dev.minor }, disk: dev.disk, offset: dev.start, size: dev.size, ranges, ttlMs: 60_000, ...extra };
}

test('capability: available where a disk has error_injection; else the reason (debugfs, lockdown, the config option)', () => {
  const { debugfs, mounts } = fakeDebugfs();
  expect(probeBlkinject({ debugfs, mounts, lockdown: '/nonexistent', release: '7.2.13' })).toMatchObject({ available: true, reason: '', detail: expect.stringMatching(/^per-disk rules/) });
  expect(probeBlkinject({ debugfs, mounts: '/dev/null', lockdown: '/nonexistent', release: '7.2.13' }).reason).toBe(
    `debugfs is not mounted at ${debugfs} (mount -t debugfs none ${debugfs}); block error injection has no other interface`,
  );
  const lock = path.join(debugfs, 'lockdown');
  fs.writeFileSync(lock, 'none [integrity] confidentiality\n');
  expect(probeBlkinject({ debugfs, mounts, lockdown: lock, release: '7.2.13' }).reason).toMatch(/^kernel lockdown \(integrity\) forbids writing debugfs files/);
  const off = fakeDebugfs(false);
  const cfg = path.join(off.debugfs, 'config');
  fs.writeFileSync(cfg, 'CONFIG_BLOCK=y\n# CONFIG_BLK_ERROR_INJECTION is not set\n');
  expect(probeBlkinject({ ...off, lockdown: '/nonexistent', release: '7.2.13+deb14-amd64', configs: [cfg] })).toEqual({
    backend: 'BACKEND_BLKINJECT',
    available: false,
    detail: '',
    reason: `this kernel (7.2.13+deb14-amd64) has no block error injection: no disk in ${off.debugfs}/block has an error_injection file (CONFIG_BLK_ERROR_INJECTION is not set). It needs CONFIG_BLK_ERROR_INJECTION (Linux 7.2+; Debian sid 7.2 ships it off)`,
  });
  fs.writeFileSync(cfg, 'CONFIG_BLOCK=y\n');
  expect(probeBlkinject({ ...off, lockdown: '/nonexistent', release: '6.1.0', configs: [cfg] }).reason).toMatch(/its config has no CONFIG_BLK_ERROR_INJECTION \(added in Linux 7\.2\)/);
});

test('a partition filter: rules at the partition offset, recorded before the first write; the model fails exactly the range with the status', async () => {
  const { kernel, b, dev, state, dir, faults, list } = setup();
  await b.probe();
  const p1 = dev('259:0');
  const recorded: boolean[] = [];
  kernel.beforeWrite = () => recorded.push(fs.existsSync(path.join(dir, 'blkinject-7:0.json')));
  const f = await b.set(spec(p1, [{ start: 100n, end: 199n, ops: ['read', 'write'] }]), p1, NOSPC);
  expect(recorded).toEqual([true, true]);
  expect(list()).toBe('2148:2247 op=READ,status=NOSPC,chance=1\n2148:2247 op=WRITE,status=NOSPC,chance=1');
  expect(kernel.bio('loop0', 'WRITE', 2148n, 1n)).toBe('NOSPC');
  expect(kernel.bio('loop0', 'READ', 2247n, 8n)).toBe('NOSPC');
  expect(kernel.bio('loop0', 'WRITE', 2147n, 1n)).toBeNull();
  expect(kernel.bio('loop0', 'WRITE', 2248n, 1n)).toBeNull();
  expect(kernel.bio('loop0', 'DISCARD', 2150n, 8n)).toBeNull();
  expect(f).toMatchObject({ backend: 'BACKEND_BLKINJECT', id: DM_ID_BASE, probability: 1, hasExpiry: true, remainingMs: '60000', fault: { error: { status: 'ERROR_STATUS_NOSPC' } }, notCounted: expect.stringMatching(/^not counted/) });
  expect(f.ranges).toEqual([{ start: '100', end: '199', ops: ['OP_READ', 'OP_WRITE'], matched: '0', failed: '0' }]);
  expect(faults).toHaveLength(1);
  expect(state.records('blkinject')).toEqual([expect.objectContaining({ disk: 'loop0', devno: '7:0', prior: null })]);
  expect(b.list()).toEqual([f]);
  expect(b.faultOn(p1)).toMatchObject({ id: f.id });
});

test('filters sharing a disk: a new one is only added (the others stay in force); deleting one rebuilds the rest exactly; the last leaves an empty list', async () => {
  const { kernel, b, dev, state, list } = setup();
  await b.probe();
  const [p1, p2, disk] = [dev('259:0'), dev('259:1'), dev('7:0')];
  const a = await b.set(spec(p1, [{ start: 0n, end: 9n, ops: ['read'] }]), p1, NOSPC);
  kernel.writes = [];
  const c = await b.set(spec(p2, [{ start: 0n, end: 9n, ops: ['write'] }], { probability: 0.25 }), p2, MEDIUM);
  expect(kernel.writes.map((w) => w.cmd)).toEqual(['add,op=WRITE,status=MEDIUM,start=4096,nr_sectors=10,chance=4']);
  const w = await b.set(spec(disk, [], { wholeOps: ['discard'], probability: 0.5 }), disk, EIO);
  expect(list()).toBe(['0:8191 op=DISCARD,status=IOERR,chance=2', '4096:4105 op=WRITE,status=MEDIUM,chance=4', '2048:2057 op=READ,status=NOSPC,chance=1'].join('\n'));
  expect(w).toMatchObject({ wholeDevice: true, probability: 0.5, ranges: [{ start: '0', end: '8191', ops: ['OP_DISCARD'] }] });
  kernel.writes = [];
  expect(await b.delete({ id: c.id! })).toBe(1);
  expect(kernel.writes.map((x) => x.cmd)).toEqual(['removeall', 'add,op=READ,status=NOSPC,start=2048,nr_sectors=10,chance=1', 'add,op=DISCARD,status=IOERR,start=0,nr_sectors=8192,chance=2']);
  expect(list()).toBe('0:8191 op=DISCARD,status=IOERR,chance=2\n2048:2057 op=READ,status=NOSPC,chance=1');
  // a replace keeps the filter's id and its place in the order
  const a2 = await b.set(spec(p1, [{ start: 5n, end: 5n, ops: ['read'] }]), p1, MEDIUM);
  expect(a2.id).toBe(a.id);
  expect(list()).toBe('0:8191 op=DISCARD,status=IOERR,chance=2\n2053:2053 op=READ,status=MEDIUM,chance=1');
  expect(await b.delete({ device: { major: 7, minor: 0 } })).toBe(1);
  expect(await b.delete({ device: { major: 259, minor: 0 } })).toBe(1);
  expect(list()).toBe('');
  expect(state.records('blkinject')).toEqual([]);
  expect(await b.delete({ id: a.id! })).toBe(0);
});

describe('refusals: a clear reason, nothing written, nothing recorded', () => {
  const cases: [string, (d: DeviceInfo) => native.FilterSpec, FaultSpec, RegExp][] = [
    ['flush', (d) => spec(d, [{ start: 0n, end: 9n, ops: ['write', 'flush'] }]), NOSPC, /cannot fail flushes/],
    ['cgroup scope', (d) => spec(d, [{ start: 0n, end: 9n, ops: ['read'] }], { cgroup: { id: 5n, level: 1 } }), NOSPC, /^backend blkinject: cgroup scope: block error injection fails every I\/O/],
    ['max failures', (d) => spec(d, [{ start: 0n, end: 9n, ops: ['read'] }], { maxFailures: 3n }), NOSPC, /max_failures/],
    ['events', (d) => spec(d, [{ start: 0n, end: 9n, ops: ['read'] }], { eventsPerSecond: 10 }), NOSPC, /no per-I\/O events/],
    ['probability not 1/N', (d) => spec(d, [{ start: 0n, end: 9n, ops: ['read'] }], { probability: 0.3 }), NOSPC, /0\.3 is not 1\/N; the nearest are 1\/3 \(0\.3333\) and 1\/4 \(0\.25\)/],
    ['probability over two ranges of one op', (d) => spec(d, [{ start: 0n, end: 9n, ops: ['read'] }, { start: 20n, end: 29n, ops: ['read'] }], { probability: 0.5 }), NOSPC, /drawn twice/],
    ['a delay', (d) => spec(d, [{ start: 0n, end: 9n, ops: ['read'] }]), { kind: 'delay', readMs: 5, writeMs: 5, flushMs: 0 }, /only ends I\/O with an error status/],
  ];
  test.each(cases)('%s', async (_n, mkSpec, fault, why) => {
    const { kernel, b, dev, state, list } = setup();
    await b.probe();
    const p1 = dev('259:0');
    expect(await b.refusal(mkSpec(p1), p1, fault)).toMatch(why.source.startsWith('^backend') ? new RegExp(why.source.replace('^backend blkinject: ', '^')) : why);
    expect((await refusalOf(b.set(mkSpec(p1), p1, fault))).message).toMatch(why);
    expect(kernel.writes).toEqual([]);
    expect(list()).toBe('');
    expect(state.records('blkinject')).toEqual([]);
  });

  test("rules iofilter did not set: refused naming them; someone else's change to ours: refused showing both lists, nothing overwritten", async () => {
    const { kernel, b, dev, list } = setup();
    await b.probe();
    const p1 = dev('259:0');
    kernel.write('loop0', ['add,op=READ,status=IOERR,start=7,nr_sectors=1']);
    expect((await refusalOf(b.set(spec(p1, [{ start: 0n, end: 9n, ops: ['read'] }]), p1, NOSPC))).message).toMatch(
      /^backend blkinject: disk loop0 already has block error injection rules that iofilter did not set:\n7:7 op=READ,status=IOERR,chance=1\n.*echo removeall > .*block\/loop0\/error_injection/s,
    );
    kernel.write('loop0', ['removeall']);
    const f = await b.set(spec(p1, [{ start: 0n, end: 9n, ops: ['read'] }]), p1, NOSPC);
    kernel.write('loop0', ['add,op=WRITE,status=IOERR,start=1,nr_sectors=1']);
    const before = list();
    kernel.writes = [];
    const r = await refusalOf(b.delete({ id: f.id! }));
    expect(r).toEqual({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/were changed by someone else \(filters \d+\); not overwritten\. live rules:\n1:1 op=WRITE.*\nexpected \(set by iofilter\):\n2048:2057 op=READ/s) });
    expect(kernel.writes).toEqual([]);
    expect(list()).toBe(before);
  });
});

test('the kernel refuses a write in the middle of a rebuild: the previous list is put back and the record with it', async () => {
  const { kernel, b, dev, state, list } = setup();
  await b.probe();
  const [p1, p2] = [dev('259:0'), dev('259:1')];
  await b.set(spec(p1, [{ start: 0n, end: 9n, ops: ['read'] }]), p1, NOSPC);
  const c = await b.set(spec(p2, [{ start: 0n, end: 9n, ops: ['read', 'write'] }]), p2, NOSPC);
  const before = list();
  kernel.failWrite = { after: 1, code: 'ENOMEM' }; // removeall goes through, the first add fails
  const r = await refusalOf(b.set(spec(p1, [{ start: 50n, end: 59n, ops: ['read'] }]), p1, MEDIUM));
  expect(r.message).toMatch(/^backend blkinject: changing the rules of disk loop0 failed: .*ENOMEM.*; the previous rules are back in force, nothing changed$/s);
  expect(list()).toBe(before);
  expect(state.records<{ prior: unknown; filters: unknown[] }>('blkinject')).toEqual([expect.objectContaining({ prior: null, filters: [expect.objectContaining({ rules: ['2048:2057 op=READ,status=NOSPC,chance=1'] }), expect.anything()] })]);
  expect(b.faultOn(p2)).toMatchObject({ id: c.id });
});

test('a crash in the middle of a change (record written, list half rebuilt): the next owner finishes it before anything else', async () => {
  const { kernel, b, dev, mk, list } = setup();
  await b.probe();
  const [p1, p2] = [dev('259:0'), dev('259:1')];
  await b.set(spec(p1, [{ start: 0n, end: 9n, ops: ['read'] }]), p1, NOSPC);
  const c = await b.set(spec(p2, [{ start: 0n, end: 9n, ops: ['write'] }]), p2, NOSPC);
  let n = 0;
  kernel.beforeWrite = () => {
    if (n++ >= 1) throw new Error('crash'); // the agent dies after removeall, before the first add
  };
  await expect(b.delete({ id: c.id! })).rejects.toThrow(/putting the previous rules back failed too/);
  kernel.beforeWrite = undefined;
  expect(list()).toBe('');
  const next = mk();
  await next.probe();
  expect(await next.restoreExpired()).toBe(0);
  expect(list()).toBe('2048:2057 op=READ,status=NOSPC,chance=1');
  expect(next.list().map((f) => f.device?.name)).toEqual(['loop0p1']);
  expect(next.unsettled()).toBe(false);
});

test('a crash deleting the last filter, before removeall: nothing is listed, yet the state is unsettled and held (agent start, watchdog) until finished', async () => {
  const { b, dev, mk, list, state } = setup();
  await b.probe();
  const p1 = dev('259:0');
  await b.set(spec(p1, [{ start: 0n, end: 9n, ops: ['read'] }], { ttlMs: 0 }), p1, NOSPC);
  // what delete writes before its removeall, and then the agent dies
  const [rec] = state.records<{ filters: unknown[]; rules?: string[]; prior: unknown }>('blkinject');
  state.putRecord('blkinject', '7:0', { ...rec, filters: [], prior: { filters: rec.filters, rules: [list()] } });
  expect(list()).toBe('2048:2057 op=READ,status=NOSPC,chance=1'); // still in force
  const next = mk();
  await next.probe();
  expect(next.list()).toEqual([]);
  expect([next.unsettled(), next.hasDeadlines(), next.nextDeadlineMs()]).toEqual([true, true, 1000]);
  await next.restoreExpired();
  expect(list()).toBe('');
  expect(state.records('blkinject')).toEqual([]);
  expect([next.unsettled(), next.hasDeadlines()]).toEqual([false, false]);
});

test('TTL: only the expired filter ends; a deadline of another boot has passed; hasDeadlines and nextDeadlineMs for the watchdog', async () => {
  const { b, dev, list } = setup();
  await b.probe();
  const [p1, p2] = [dev('259:0'), dev('259:1')];
  await b.set(spec(p1, [{ start: 0n, end: 9n, ops: ['read'] }], { ttlMs: 5000 }), p1, NOSPC);
  await b.set(spec(p2, [{ start: 0n, end: 9n, ops: ['read'] }], { ttlMs: 20_000 }), p2, NOSPC);
  expect(b.hasDeadlines()).toBe(true);
  expect(b.nextDeadlineMs()).toBe(5000);
  now += 4999;
  expect(await b.restoreExpired()).toBe(0);
  now += 1;
  expect(await b.restoreExpired()).toBe(1);
  expect(list()).toBe('4096:4105 op=READ,status=NOSPC,chance=1');
  boot = 'boot-b';
  try {
    expect(await b.restoreExpired()).toBe(1);
  } finally {
    boot = 'boot-a';
  }
  expect(list()).toBe('');
  expect(b.hasDeadlines()).toBe(false);
  expect(b.nextDeadlineMs()).toBe(Infinity);
});

test('a new medium in the disk: its rules are removed; a disk that is gone: its filters are forgotten', async () => {
  const { kernel, b, dev, sysfs, list, state } = setup();
  await b.probe();
  const p1 = dev('259:0');
  await b.set(spec(p1, [{ start: 0n, end: 9n, ops: ['read'] }], { ttlMs: 0 }), p1, NOSPC);
  setDiskseq(sysfs, 0, 10);
  await b.restoreExpired();
  expect(list()).toBe('');
  expect(b.list()).toEqual([]);
  const p1b = dev('259:0');
  await b.set(spec(p1b, [{ start: 0n, end: 9n, ops: ['read'] }]), p1b, NOSPC);
  kernel.disks.delete('loop0');
  await b.restoreExpired();
  expect(state.records('blkinject')).toEqual([]);
});

test('service: auto serves ENOSPC and EIO on a plain disk with blkinject when nothing is attached; Status lists it; delete by id; halt empties the list', async () => {
  const { kernel, sysfs } = setup();
  const { debugfs, mounts } = fakeDebugfs();
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-blk-svc-'));
  const cfg = resolveConfig({ listen: '127.0.0.1:0', attach: 'none', pinDir: '/sys/fs/bpf/unused', stateDir });
  const watchdogs: string[] = [];
  const core = new IoFilterCore(cfg, pino({ level: 'silent' }), fakeKernel(), [], sysfs, undefined, {
    clock,
    release: '7.2.13',
    sysfs,
    debugfs,
    blkFiles: kernel,
    blkProbe: { mounts, lockdown: '/nonexistent' },
    spawnWatchdog: (d) => (watchdogs.push(d), 0),
  });
  try {
    await core.start();
    const r = await core.setFilter({ device: '259:1', ranges: [{ start: '8', end: '15', ops: ['OP_WRITE'] }], wholeDeviceOps: [], ttlMs: '60000', maxFailures: '0', fault: { error: { status: 'ERROR_STATUS_NOSPC' } } } as never);
    expect(r.filter).toMatchObject({ backend: 'BACKEND_BLKINJECT', fault: { error: { status: 'ERROR_STATUS_NOSPC' } } });
    const e = await core.setFilter({ device: '259:0', ranges: [], wholeDeviceOps: ['OP_READ'], ttlMs: '0', maxFailures: '0' } as never);
    expect(e.filter).toMatchObject({ backend: 'BACKEND_BLKINJECT', fault: { error: { status: 'ERROR_STATUS_IOERR' } } });
    expect(new Set(watchdogs)).toEqual(new Set([stateDir]));
    const st = await core.status();
    expect(st.filters.map((f) => [f.device?.name, f.backend])).toEqual([['loop0p2', 'BACKEND_BLKINJECT'], ['loop0p1', 'BACKEND_BLKINJECT']]); // in the order they were set
    expect(st.backends?.find((x) => x.backend === 'BACKEND_BLKINJECT')).toMatchObject({ available: true });
    expect(await core.deleteFilter({ id: r.filter!.id } as never)).toMatchObject({ existed: true, removed: 1, device: { major: 259, minor: 1 } });
    expect(kernel.read('loop0')).toBe('2048:4095 op=READ,status=IOERR,chance=1\n');
    expect(await core.clearFilters()).toEqual({ removed: 1 });
    expect(kernel.read('loop0')).toBe('');
    // a flush on a plain disk: nobody can; the reason names every backend's
    const why = await refusalOf(core.setFilter({ device: '259:0', ranges: [], wholeDeviceOps: ['OP_FLUSH'], ttlMs: '0', maxFailures: '0', fault: { error: { status: 'ERROR_STATUS_TIMEOUT' } } } as never));
    expect(why.message).toMatch(/^no backend can do error ETIMEDOUT on loop0p1 exactly as asked: bpf: .*EIO only.*dm: .*not a device-mapper device.*blkinject: .*cannot fail flushes.*What would work: the blkinject backend/);
    expect(kernel.read('loop0')).toBe('');
  } finally {
    core.close();
  }
});

test('service, observe attached: auto keeps counting EIO on a plain disk with bpf (no real faults by surprise); other statuses go to blkinject', async () => {
  const { kernel, sysfs } = setup();
  const { debugfs, mounts } = fakeDebugfs();
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-blk-svc-'));
  const cfg = resolveConfig({ listen: '127.0.0.1:0', attach: 'observe', pinDir: '/sys/fs/bpf/unused', stateDir });
  const core = new IoFilterCore(cfg, pino({ level: 'silent' }), fakeKernel(), [], sysfs, undefined, {
    clock,
    release: '7.2.13',
    sysfs,
    debugfs,
    blkFiles: kernel,
    blkProbe: { mounts, lockdown: '/nonexistent' },
    spawnWatchdog: () => 0,
  });
  try {
    await core.start();
    const e = await core.setFilter({ device: '259:0', ranges: [], wholeDeviceOps: ['OP_READ'], ttlMs: '0', maxFailures: '0' } as never);
    expect(e.filter?.backend).toBe('BACKEND_BPF');
    expect(kernel.read('loop0')).toBe('');
    const n = await core.setFilter({ device: '259:1', ranges: [], wholeDeviceOps: ['OP_READ'], ttlMs: '0', maxFailures: '0', fault: { error: { status: 'ERROR_STATUS_NOSPC' } } } as never);
    expect(n.filter?.backend).toBe('BACKEND_BLKINJECT');
    const named = await core.setFilter({ device: '7:0', ranges: [{ start: '0', end: '7', ops: ['OP_READ'] }], wholeDeviceOps: [], ttlMs: '0', maxFailures: '0', backend: 'BACKEND_BLKINJECT' } as never);
    expect(named.filter?.backend).toBe('BACKEND_BLKINJECT');
    expect(kernel.read('loop0')).toBe('0:7 op=READ,status=IOERR,chance=1\n4096:6143 op=READ,status=NOSPC,chance=1\n');
    await core.clearFilters();
  } finally {
    core.close();
  }
});
