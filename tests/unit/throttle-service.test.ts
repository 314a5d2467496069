// The service with the throttle backend (fake kernel, fake cgroup tree, the kernel's
// io.max rules from tests/helpers/fake-iomax.ts): auto picks throttle for a throttle
// fault with a cgroup scope; a throttle filter stands beside a bpf filter on the same
// disk (io.max holds bios back before they are submitted, the program judges them
// after); DeleteFilter by device with a cgroup scope reaches it, an unscoped delete is
// refused while it stands, all_scopes takes every filter; Status, halt and detach.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { Dmsetup } from '../../agent/backends/dm/dmsetup';
import { Clock, DM_ID_BASE } from '../../agent/backends/dm/state';
import { resolveConfig } from '../../agent/config';
import { IoFilterCore } from '../../agent/service';
import type { SetFilterRequest__Output } from '../../proto/gen/iofilter/v1/SetFilterRequest';
import type { DeleteFilterRequest__Output } from '../../proto/gen/iofilter/v1/DeleteFilterRequest';
import { fakeCgroups, FakeCgroups } from '../helpers/fake-cgroups';
import { FakeDm } from '../helpers/fake-dm';
import { FakeIoMax } from '../helpers/fake-iomax';
import { fakeKernel, fakeSysfs } from '../helpers/fake-kernel';
import { refusalOf } from '../helpers/refusal';

let now = 5_000_000;
const clock: Clock = { bootId: () => 'b', boottimeMs: () => now, realtimeMs: () => now };
const cores: IoFilterCore[] = [];
let cg: FakeCgroups;
let io: FakeIoMax;

async function agent(attach: 'none' | 'observe' = 'none') {
  const watchdogs: string[] = [];
  const sysfs = fakeSysfs();
  cg = fakeCgroups();
  io = new FakeIoMax(sysfs);
  io.populate(cg.dir);
  const cfg = resolveConfig({ listen: '127.0.0.1:0', attach, pinDir: '/sys/fs/bpf/unused', stateDir: fs.mkdtempSync(path.join(os.tmpdir(), 'iof-thr-svc-')) });
  const core = new IoFilterCore(cfg, pino({ level: 'silent' }), fakeKernel(), [], sysfs, cg.resolver, {
    dmsetup: new Dmsetup(new FakeDm().exec),
    clock,
    release: '6.1.0',
    spawnWatchdog: (d) => (watchdogs.push(d), 0),
  });
  (core.backends.throttle.o as { io?: FakeIoMax }).io = io;
  (core.backends.throttle.o as { kallsyms?: string }).kallsyms = '/nonexistent';
  cores.push(core);
  await core.start();
  return { core, watchdogs };
}

const req = (over: Partial<SetFilterRequest__Output>) => ({ device: '7:0', ranges: [], wholeDeviceOps: [], ttlMs: '60000', maxFailures: '0', ...over }) as unknown as SetFilterRequest__Output;
const del = (over: Partial<DeleteFilterRequest__Output>) => ({ device: '', cgroupPath: '', cgroupId: '0', pid: 0, allScopes: false, id: 0, ...over }) as unknown as DeleteFilterRequest__Output;
const W1M = { throttle: { wbps: '1048576' } } as never;
const ioMax = (rel: string) => io.read(path.join(cg.dir, rel, 'io.max'));

afterEach(() => {
  for (const c of cores.splice(0)) c.close();
  cg.cleanup();
});

test('auto, not attached: a throttle fault with a cgroup is served by throttle; Status lists it and the backends in order', async () => {
  const { core, watchdogs } = await agent();
  const r = await core.setFilter(req({ cgroupPath: '/system.slice', fault: W1M, view: 'FILTER_VIEW_FULL' }));
  expect(r.filter).toMatchObject({ backend: 'BACKEND_THROTTLE', id: DM_ID_BASE, cgroup: { path: '/system.slice', id: String(cg.id('/system.slice')) }, fault: { throttle: { wbps: '1048576' } }, remainingMs: '60000' });
  expect(ioMax('/system.slice')).toBe('7:0 rbps=max wbps=1048576 riops=max wiops=max\n');
  expect(watchdogs).toHaveLength(1);
  const st = await core.status();
  expect(st.filters).toEqual([r.filter]);
  expect(st.backends?.map((b) => [b.backend, b.available])).toEqual([
    ['BACKEND_BPF', false],
    ['BACKEND_DM', false],
    ['BACKEND_BLKINJECT', false],
    ['BACKEND_THROTTLE', true],
  ]);
  expect(st.backends?.find((b) => b.backend === 'BACKEND_THROTTLE')?.reason).toMatch(/blk-throttle not confirmed|^$/);
  expect(await core.clearFilters()).toEqual({ removed: 1 });
  expect(ioMax('/system.slice')).toBe('');
});

test('auto with no scope: refused, each backend saying why; nothing written', async () => {
  const { core } = await agent();
  const r = await refusalOf(core.setFilter(req({ fault: W1M })));
  expect(r).toEqual({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/no backend can do throttle wbps 1 MiB\/s on loop0 exactly as asked: .*throttle: no cgroup scope/) });
  expect(r.message).not.toMatch(/What would work/);
  expect(io.writes).toEqual([]);
});

test('beside a bpf filter on the same disk: both stand; an unscoped delete is refused naming the throttle; the scoped delete takes it alone; all_scopes takes every filter', async () => {
  const { core } = await agent('observe');
  const bpf = await core.setFilter(req({ wholeDeviceOps: ['OP_WRITE'] as never }));
  expect(bpf.filter?.backend).toBe('BACKEND_BPF');
  const t = await core.setFilter(req({ cgroupPath: '/user.slice', fault: W1M }));
  expect(t.filter?.backend).toBe('BACKEND_THROTTLE');
  // and a bpf filter after a throttle one
  const bpf2 = await core.setFilter(req({ wholeDeviceOps: ['OP_WRITE'] as never, cgroupPath: '/system.slice' }));
  expect(bpf2.filter?.backend).toBe('BACKEND_BPF');
  expect((await core.status()).filters?.map((f) => f.backend).sort()).toEqual(['BACKEND_BPF', 'BACKEND_BPF', 'BACKEND_THROTTLE']);

  const refused = await refusalOf(core.deleteFilter(del({ device: '7:0' })));
  expect(refused.message).toMatch(new RegExp(`7:0 has a throttle filter .*nothing was deleted: filter ${t.filter!.id} for cgroup /user.slice \\(delete it with --cgroup /user.slice or --id ${t.filter!.id}\\)`));
  expect(ioMax('/user.slice')).toBe('7:0 rbps=max wbps=1048576 riops=max wiops=max\n');
  expect((await core.status()).filters).toHaveLength(3);

  expect(await core.deleteFilter(del({ device: '7:0', cgroupPath: '/user.slice' }))).toMatchObject({ existed: true, removed: 1 });
  expect(ioMax('/user.slice')).toBe('');
  expect((await core.status()).filters?.map((f) => f.backend)).toEqual(['BACKEND_BPF', 'BACKEND_BPF']);

  await core.setFilter(req({ cgroupPath: '/system.slice', fault: W1M }));
  // same cgroup as bpf2: the scoped delete takes both
  expect(await core.deleteFilter(del({ device: '7:0', cgroupId: String(cg.id('/system.slice')) }))).toMatchObject({ existed: true, removed: 2 });
  await core.setFilter(req({ cgroupPath: '/user.slice', fault: W1M }));
  expect(await core.deleteFilter(del({ device: '7:0', allScopes: true }))).toMatchObject({ existed: true, removed: 2 });
  expect((await core.status()).filters).toEqual([]);
  expect(ioMax('/user.slice')).toBe('');
});

test('not attached: a scoped delete by pid, and by the path of a cgroup removed since (its line went with it)', async () => {
  const { core } = await agent();
  cg.addPid(4242, '/kubepods.slice/pod-a/ctr-a');
  await core.setFilter(req({ pid: 4242, fault: W1M } as never));
  expect((await core.status()).filters?.[0].cgroup).toMatchObject({ path: '/kubepods.slice/pod-a/ctr-a', fromPid: 4242 });
  expect(await core.deleteFilter(del({ device: '7:0', pid: 4242 }))).toMatchObject({ existed: true, removed: 1 });
  await core.setFilter(req({ cgroupPath: '/kubepods.slice/pod-b/ctr-b', fault: W1M }));
  fs.rmSync(path.join(cg.dir, 'kubepods.slice/pod-b/ctr-b'), { recursive: true });
  expect(await core.deleteFilter(del({ device: '7:0', cgroupPath: '/kubepods.slice/pod-b/ctr-b' }))).toMatchObject({ existed: true, removed: 1 });
  expect((await core.status()).filters).toEqual([]);
});

test('detach ends throttle filters too; a partition is refused naming its disk', async () => {
  const { core } = await agent('observe');
  expect((await refusalOf(core.setFilter(req({ device: '7:1', cgroupPath: '/user.slice', fault: W1M })))).message).toMatch(/loop0p1 is a partition of loop0/);
  await core.setFilter(req({ cgroupPath: '/user.slice', fault: W1M }));
  expect(await core.detach()).toEqual({ wasAttached: true, filtersRemoved: 1 });
  expect(ioMax('/user.slice')).toBe('');
});

test('the TTL: the agent restores an expired throttle on its own pass', async () => {
  const { core } = await agent();
  await core.setFilter(req({ cgroupPath: '/user.slice', fault: W1M, ttlMs: '2000' }));
  now += 2000;
  expect(await core.backends.restoreExpired()).toBe(1);
  expect(ioMax('/user.slice')).toBe('');
  expect((await core.status()).filters).toEqual([]);
});
