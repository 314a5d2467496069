// The throttle backend (cgroup v2 io.max) against a fake cgroup tree and the kernel's
// io.max rules (tests/helpers/fake-iomax.ts): lines parsed and rendered exactly, the
// cgroup's previous line persisted before the write and restored byte for byte (or
// removed when there was none), one filter per (device, cgroup), every refusal leaving
// io.max untouched, a crash between persist and write, a line changed by someone else
// reported instead of overwritten, and the watchdog's restore of an expired record.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import type * as native from '../../native';
import { Dmsetup } from '../../agent/backends/dm/dmsetup';
import { Clock, DM_ID_BASE, StateDir } from '../../agent/backends/dm/state';
import { persistedBackends } from '../../agent/backends/persisted';
import { ThrottleBackend, ThrottleRecord } from '../../agent/backends/throttle/backend';
import { badLimit, clearLine, lineFor, parseLine, renderLine } from '../../agent/backends/throttle/iomax';
import { resolveDevice } from '../../agent/devices';
import { EIO, FaultSpec } from '../../agent/faults';
import { errorStatus } from '../../proto/faults';
import { fakeCgroups, FakeCgroups } from '../helpers/fake-cgroups';
import { FakeDm } from '../helpers/fake-dm';
import { FakeIoMax } from '../helpers/fake-iomax';
import { fakeSysfs } from '../helpers/fake-kernel';

let now = 1_000_000;
const clock: Clock = { bootId: () => 'boot-a', boottimeMs: () => now, realtimeMs: () => 1_700_000_000_000 + now };
const log = pino({ level: 'silent' });
const MiB = 1n << 20n;
const thr = (o: Partial<{ rbps: bigint; wbps: bigint; riops: bigint; wiops: bigint }>): FaultSpec => ({ kind: 'throttle', rbps: 0n, wbps: 0n, riops: 0n, wiops: 0n, ...o });

let cg: FakeCgroups;
let sysfs: string;
let io: FakeIoMax;
let state: StateDir;
const kallsyms = () => {
  const f = path.join(os.tmpdir(), `iof-kallsyms-${process.pid}`);
  fs.writeFileSync(f, 'ffffffff81000000 T _text\nffffffff81600000 T __blk_throtl_bio\n');
  return f;
};

beforeEach(() => {
  cg = fakeCgroups();
  sysfs = fakeSysfs();
  io = new FakeIoMax(sysfs);
  io.populate(cg.dir);
  state = new StateDir(fs.mkdtempSync(path.join(os.tmpdir(), 'iof-thr-state-')));
});
afterEach(() => cg.cleanup());

function backend(onFault?: () => void) {
  return new ThrottleBackend({ state, clock, log, sysfs, cgroups: cg.resolver, kallsyms: kallsyms(), io, onFault });
}
const disk = () => resolveDevice('7:0', sysfs);
const ioMax = (rel: string) => path.join(cg.dir, rel, 'io.max');

function spec(rel: string | null, extra: Partial<native.FilterSpec> = {}): native.FilterSpec {
  const d = disk();
  return {
    device: { major: d.major, minor: d.minor }, disk: { major: d.major, minor: d.minor }, offset: 0n, size: d.size, ranges: [], wholeOps: ['read', 'write'], ttlMs: 60_000,
    ...(rel !== null && { cgroup: { id: cg.id(rel), level: rel.split('/').filter(Boolean).length }, meta: { cgroupPath: rel } }),
    ...extra,
  };
}

describe('io.max lines', () => {
  test.each([
    '7:0 rbps=max wbps=1048576 riops=max wiops=max',
    '8:16 rbps=2097152 wbps=max riops=5 wiops=4294967294',
    '253:3 rbps=2 wbps=18446744073709551614 riops=max wiops=120',
  ])('%s parses and renders back byte for byte', (line) => {
    const p = parseLine(line);
    expect(renderLine(p.devno, p.limits)).toBe(line);
  });
  test('all max renders as no line; clearLine names every key; lineFor finds only its device', () => {
    expect(renderLine('7:0', { rbps: null, wbps: null, riops: null, wiops: null })).toBeNull();
    expect(clearLine('7:0')).toBe('7:0 rbps=max wbps=max riops=max wiops=max');
    const text = '7:0 rbps=max wbps=5 riops=max wiops=max\n7:16 rbps=9 wbps=max riops=max wiops=max\n';
    expect(lineFor(text, '7:1')).toBeNull();
    expect(lineFor(text, '7:16')).toBe('7:16 rbps=9 wbps=max riops=max wiops=max');
    expect(() => parseLine('7:0 rbps=max wbps=5 riops=max wiops=max idle=3')).toThrow(/not an io.max line/);
  });
  test('bounds the kernel keeps exactly', () => {
    expect(badLimit({ rbps: 1n, wbps: null, riops: null, wiops: null })).toMatch(/rbps=1: the kernel's smallest limit is 2/);
    expect(badLimit({ rbps: null, wbps: null, riops: 4294967295n, wiops: null })).toMatch(/riops=4294967295: .*32 bits.*at most 4294967294/);
    expect(badLimit({ rbps: null, wbps: (1n << 64n) - 1n, riops: null, wiops: null })).toMatch(/64 bits/);
    expect(badLimit({ rbps: 2n, wbps: (1n << 64n) - 2n, riops: 4294967294n, wiops: null })).toBeNull();
  });
});

test('probe: available with cgroup2, io at the root and io.max in a cgroup', async () => {
  expect(await backend().probe()).toEqual({ backend: 'BACKEND_THROTTLE', available: true, reason: '', detail: `cgroup v2 io.max (rbps, wbps, riops, wiops) under ${cg.dir}` });
});

test('probe: no cgroup2, no io controller, no blk-throttle: unavailable with the reason', async () => {
  const none = fakeCgroups({ noCgroup2: true });
  const b = new ThrottleBackend({ state, clock, log, sysfs, cgroups: none.resolver, io });
  expect(await b.probe()).toMatchObject({ available: false, reason: expect.stringMatching(/no cgroup v2 hierarchy is mounted/) });
  const noio = fakeCgroups({ rootControllers: 'cpu memory', blkioV1: true });
  const b2 = new ThrottleBackend({ state, clock, log, sysfs, cgroups: noio.resolver, io });
  expect(await b2.probe()).toMatchObject({ available: false, reason: expect.stringMatching(/io controller is not available on cgroup v2 .* bound to cgroup v1 blkio/) });
  const nothr = fakeCgroups(); // cgroups with io but no io.max: no CONFIG_BLK_DEV_THROTTLING
  const b3 = new ThrottleBackend({ state, clock, log, sysfs, cgroups: nothr.resolver, io });
  expect(await b3.probe()).toMatchObject({ available: false, reason: expect.stringMatching(/no blk-throttle \(CONFIG_BLK_DEV_THROTTLING is off\)/) });
  for (const c of [none, noio, nothr]) c.cleanup();
});

test('set then delete, no line before: the record is on disk before the write; delete removes the line', async () => {
  const faults: number[] = [];
  const b = backend(() => faults.push(1));
  await b.probe();
  const persisted: boolean[] = [];
  io.beforeWrite = () => persisted.push(state.records('throttle').length === 1);
  const f = await b.set(spec('/system.slice/db.service'), disk(), thr({ wbps: MiB }));
  expect(persisted).toEqual([true]);
  expect(io.read(ioMax('/system.slice/db.service'))).toBe('7:0 rbps=max wbps=1048576 riops=max wiops=max\n');
  expect(f).toMatchObject({
    id: DM_ID_BASE, backend: 'BACKEND_THROTTLE', wholeDevice: true, hasExpiry: true, remainingMs: '60000', notCounted: expect.stringMatching(/^not counted/),
    cgroup: { id: String(cg.id('/system.slice/db.service')), path: '/system.slice/db.service' }, fault: { throttle: { wbps: String(MiB), rbps: '0' } },
  });
  expect(faults).toHaveLength(1);
  expect(state.records<ThrottleRecord>('throttle')).toEqual([expect.objectContaining({ original: null, line: '7:0 rbps=max wbps=1048576 riops=max wiops=max', deadline: { bootId: 'boot-a', boottimeMs: now + 60_000, realtimeMs: expect.any(Number) } })]);
  expect(await b.delete({ id: f.id! })).toBe(1);
  expect(io.read(ioMax('/system.slice/db.service'))).toBe('');
  expect(io.writes.map((w) => w.line)).toEqual(['7:0 rbps=max wbps=1048576 riops=max wiops=max', '7:0 rbps=max wbps=max riops=max wiops=max']);
  expect(state.records('throttle')).toEqual([]);
});

test('a line with other values before: replaced by the filter, restored byte for byte; a second set keeps the id and the first original', async () => {
  const file = ioMax('/user.slice');
  io.write(file, '7:0 rbps=1000 riops=5');
  const before = io.read(file);
  expect(before).toBe('7:0 rbps=1000 wbps=max riops=5 wiops=max\n');
  const b = backend();
  await b.probe();
  const a = await b.set(spec('/user.slice'), disk(), thr({ wbps: 4n * MiB }));
  expect(io.read(file)).toBe('7:0 rbps=max wbps=4194304 riops=max wiops=max\n'); // the filter's limits, exactly: 0 is no limit
  const a2 = await b.set(spec('/user.slice'), disk(), thr({ riops: 100n, wiops: 200n }));
  expect(a2.id).toBe(a.id);
  expect(io.read(file)).toBe('7:0 rbps=max wbps=max riops=100 wiops=200\n');
  expect(state.records<ThrottleRecord>('throttle')[0].original).toBe('7:0 rbps=1000 wbps=max riops=5 wiops=max');
  expect(await b.delete({ device: { major: 7, minor: 0 } })).toBe(1);
  expect(io.read(file)).toBe(before);
});

test('two cgroups on one device stand side by side; each delete touches only its own line', async () => {
  const b = backend();
  await b.probe();
  const x = await b.set(spec('/kubepods.slice/pod-a/ctr-a'), disk(), thr({ rbps: 3n * MiB }));
  const y = await b.set(spec('/kubepods.slice/pod-b/ctr-b'), disk(), thr({ rbps: 5n * MiB }));
  expect(x.id).not.toBe(y.id);
  expect(b.list().map((f) => f.cgroup?.path)).toEqual(expect.arrayContaining(['/kubepods.slice/pod-a/ctr-a', '/kubepods.slice/pod-b/ctr-b']));
  expect(await b.deleteScoped({ major: 7, minor: 0 }, { id: cg.id('/kubepods.slice/pod-a/ctr-a') })).toBe(1);
  expect(io.read(ioMax('/kubepods.slice/pod-a/ctr-a'))).toBe('');
  expect(io.read(ioMax('/kubepods.slice/pod-b/ctr-b'))).toBe('7:0 rbps=5242880 wbps=max riops=max wiops=max\n');
  expect(await b.clear()).toBe(1);
  expect(io.read(ioMax('/kubepods.slice/pod-b/ctr-b'))).toBe('');
});

describe('refusals: the reason, and io.max untouched', () => {
  const cases: [string, () => [native.FilterSpec, FaultSpec], RegExp][] = [
    ['another kind', () => [spec('/user.slice'), EIO], /serves throttle faults \(cgroup v2 io.max\) only; error EIO is served by the bpf backend or the dm backend/],
    ['ENOSPC', () => [spec('/user.slice'), { kind: 'error', status: errorStatus('NOSPC')! }], /served by the block error injection backend/],
    ['delay', () => [spec('/user.slice'), { kind: 'delay', readMs: 5, writeMs: 5, flushMs: 0 }], /served by the dm backend/],
    ['no cgroup scope', () => [spec(null), thr({ wbps: MiB })], /no cgroup scope: io.max limits one cgroup's I\/O/],
    ['the root cgroup', () => [spec('/'), thr({ wbps: MiB })], /the root cgroup: the kernel does not throttle it/],
    ['io not enabled', () => [spec('/user.slice/u.scope'), thr({ wbps: MiB })], /io controller is not enabled for \/user.slice\/u.scope .*cg root\/user.slice\/cgroup.subtree_control needs \+io; enable it with: echo \+io > '.*\/user.slice\/cgroup.subtree_control'$/],
    ['io not enabled two levels', () => [spec('/system.slice/db.service/worker'), thr({ wbps: MiB })], /db.service\/cgroup.subtree_control needs \+io/],
    ['ranges', () => [spec('/user.slice', { ranges: [{ start: 0n, end: 9n, ops: ['read', 'write'] }] }), thr({ wbps: MiB })], /ranges: io.max limits a whole device/],
    ['probability', () => [spec('/user.slice', { probability: 0.5 }), thr({ wbps: MiB })], /probability 0.5/],
    ['max failures', () => [spec('/user.slice', { maxFailures: 3n }), thr({ wbps: MiB })], /max_failures: io.max fails nothing/],
    ['events', () => [spec('/user.slice', { eventsPerSecond: 10 }), thr({ wbps: MiB })], /events: throttle filters have no per-I\/O events/],
    ['a limit of 1', () => [spec('/user.slice'), thr({ wbps: 1n })], /wbps=1: the kernel's smallest limit is 2/],
    ['iops beyond 32 bits', () => [spec('/user.slice'), thr({ wiops: 1n << 32n })], /wiops=4294967296: .*32 bits/],
  ];
  test.each(cases)('%s', async (_n, mk, why) => {
    const b = backend();
    await b.probe();
    const [s, f] = mk();
    expect(await b.refusal(s, disk(), f)).toMatch(why);
    await expect(b.set(s, disk(), f)).rejects.toThrow(/^backend throttle: /);
    expect(io.writes).toEqual([]);
    expect(state.records('throttle')).toEqual([]);
  });

  test('a partition: refused naming its disk (the kernel takes whole disks only)', async () => {
    const b = backend();
    await b.probe();
    const p = resolveDevice('7:1', sysfs);
    const s = { ...spec('/user.slice'), device: { major: 7, minor: 1 } };
    expect(await b.refusal(s, p, thr({ wbps: MiB }))).toMatch(/loop0p1 is a partition of loop0: io.max limits whole disks .*ENODEV.*set the filter on \/dev\/loop0/);
    expect(() => io.write(ioMax('/user.slice'), '7:1 wbps=1048576')).toThrow(/ENODEV/); // what the kernel would say
    expect(io.writes).toEqual([]);
  });
});

test('a write the kernel refuses: the record is taken back, nothing changed', async () => {
  const b = backend();
  await b.probe();
  io.beforeWrite = () => {
    throw Object.assign(new Error('EBUSY: fake'), { code: 'EBUSY' });
  };
  await expect(b.set(spec('/user.slice'), disk(), thr({ wbps: MiB }))).rejects.toThrow(/writing "7:0 rbps=max wbps=1048576 riops=max wiops=max" to .* failed, nothing changed: EBUSY/);
  expect(state.records('throttle')).toEqual([]);
  expect(io.read(ioMax('/user.slice'))).toBe('');
});

test('crash between persist and write: the next agent finds the original still in force and only forgets the record', async () => {
  const file = ioMax('/user.slice');
  io.write(file, '7:0 riops=7');
  const b = backend();
  await b.probe();
  await b.set(spec('/user.slice', { ttlMs: 1000 }), disk(), thr({ wbps: MiB }));
  // as if the agent had died after putRecord and before the write: the kernel still has the original
  io.write(file, '7:0 riops=7 wbps=max');
  io.writes = [];
  const next = backend();
  await next.probe();
  now += 1000;
  expect(await next.restoreExpired()).toBe(1);
  expect(io.writes).toEqual([]); // nothing to write back
  expect(io.read(file)).toBe('7:0 rbps=max wbps=max riops=7 wiops=max\n');
  expect(state.records('throttle')).toEqual([]);
});

test('the watchdog (persistedBackends, as watchdog.ts builds them) restores an expired record exactly, not one before its deadline', async () => {
  const file = ioMax('/system.slice');
  io.write(file, '7:0 rbps=123456 wiops=99');
  const before = io.read(file);
  const agent = backend();
  await agent.probe();
  await agent.set(spec('/system.slice', { ttlMs: 5000 }), disk(), thr({ wbps: 2n * MiB }));
  await agent.set(spec('/user.slice', { ttlMs: 60_000 }), disk(), thr({ wbps: 2n * MiB }));
  // the agent is gone; the watchdog builds the same backends from the state dir
  const { all } = persistedBackends({ state, dmsetup: new Dmsetup(new FakeDm().exec), clock, release: '6.1.0', log, sysfs, cgroups: cg.resolver });
  const w = all.find((x) => x.name === 'throttle') as ThrottleBackend;
  (w.o as { io?: FakeIoMax }).io = io;
  for (const x of all) await x.probe();
  expect(w.hasDeadlines()).toBe(true);
  expect(w.nextDeadlineMs()).toBe(5000);
  now += 4999;
  expect(await w.restoreExpired()).toBe(0);
  now += 1;
  expect(await w.restoreExpired()).toBe(1);
  expect(io.read(file)).toBe(before);
  expect(io.read(ioMax('/user.slice'))).toBe('7:0 rbps=max wbps=2097152 riops=max wiops=max\n');
  expect(w.list().map((f) => f.cgroup?.path)).toEqual(['/user.slice']);
  now += 60_000;
});

test('a line someone else changed while throttled: delete refuses, naming both, and overwrites nothing; restored by hand, delete forgets it', async () => {
  const file = ioMax('/user.slice');
  const b = backend();
  await b.probe();
  const f = await b.set(spec('/user.slice'), disk(), thr({ wbps: MiB }));
  io.write(file, '7:0 wbps=777777');
  io.writes = [];
  await expect(b.delete({ id: f.id! })).rejects.toThrow(/changed by someone else while throttled .*now: 7:0 rbps=max wbps=777777 riops=max wiops=max; set by iofilter: 7:0 rbps=max wbps=1048576 riops=max wiops=max; .*\(no line\)/);
  expect(io.writes).toEqual([]);
  io.write(file, clearLine('7:0'));
  expect(await b.delete({ id: f.id! })).toBe(1);
  expect(state.records('throttle')).toEqual([]);
});

test('a cgroup removed while throttled: its line went with it; restore forgets the record', async () => {
  const b = backend();
  await b.probe();
  await b.set(spec('/kubepods.slice/pod-a/ctr-a'), disk(), thr({ wbps: MiB }));
  fs.rmSync(path.join(cg.dir, 'kubepods.slice/pod-a/ctr-a'), { recursive: true });
  io.writes = [];
  expect(await b.clear()).toBe(1);
  expect(io.writes).toEqual([]);
  expect(state.records('throttle')).toEqual([]);
});
