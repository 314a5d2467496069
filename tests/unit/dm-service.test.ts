// The service with the dm backend beside bpf (fake kernel, in-memory device-mapper):
// auto picks dm on a dm device when nothing enforcing is attached, bpf and dm keep off
// each other's devices, dm ids cannot collide with bpf ids, Delete/Clear/Detach restore
// the original table, Status lists backends and dm filters ("not counted"), and a
// restarted agent restores faults that expired while it was gone before it serves.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { Dmsetup } from '../../agent/backends/dm/dmsetup';
import { Clock, DM_ID_BASE } from '../../agent/backends/dm/state';
import { resolveConfig } from '../../agent/config';
import { IoFilterCore } from '../../agent/service';
import type { SetFilterRequest__Output } from '../../proto/gen/iofilter/v1/SetFilterRequest';
import { FakeDm } from '../helpers/fake-dm';
import { fakeKernel } from '../helpers/fake-kernel';
import { refusalOf } from '../helpers/refusal';

const ORIGINAL = '0 2048 linear 7:0 100\n2048 1024 linear 7:1 0\n';
const RW = ['OP_READ', 'OP_WRITE', 'OP_DISCARD', 'OP_WRITE_ZEROES'];
let now = 5_000_000;
const clock: Clock = { bootId: () => 'b', boottimeMs: () => now, realtimeMs: () => now };
const cores: IoFilterCore[] = [];

function agent(fake: FakeDm, stateDir: string, attach: 'none' | 'observe' = 'none') {
  const watchdogs: string[] = [];
  const cfg = resolveConfig({ listen: '127.0.0.1:0', attach, pinDir: '/sys/fs/bpf/unused', stateDir });
  const core = new IoFilterCore(cfg, pino({ level: 'silent' }), fakeKernel(), [], fake.sysfs, undefined, {
    dmsetup: new Dmsetup(fake.exec),
    clock,
    release: '6.1.0',
    sysfs: fake.sysfs,
    spawnWatchdog: (d) => (watchdogs.push(d), 0),
    blkProbe: { mounts: '/dev/null' }, // no debugfs, whatever this host has
  });
  // the fake device-mapper's /dev tree
  (core.backends.dm.o as { devDir?: string }).devDir = fake.devDir;
  cores.push(core);
  return { core, watchdogs };
}

const req = (over: Partial<SetFilterRequest__Output>) => ({ device: '253:0', ranges: [], wholeDeviceOps: [], ttlMs: '60000', maxFailures: '0', ...over }) as unknown as SetFilterRequest__Output;

afterAll(() => {
  for (const c of cores) c.close();
});

function setup() {
  const fake = new FakeDm();
  fake.add('vg-lv', ORIGINAL);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-dm-svc-'));
  return { fake, dir };
}

test('not attached, a dm device, auto: served by dm; Status lists the filter and the backends; delete restores the table', async () => {
  const { fake, dir } = setup();
  const { core, watchdogs } = agent(fake, dir);
  await core.start();
  const r = await core.setFilter(req({ ranges: [{ start: '0', end: '9', ops: RW }] as never, view: 'FILTER_VIEW_FULL' }));
  expect(r.filter).toMatchObject({ backend: 'BACKEND_DM', id: DM_ID_BASE, dm: { name: 'vg-lv', originalTable: ORIGINAL }, notCounted: expect.stringMatching(/^not counted/) });
  expect(fake.devs.get('vg-lv')!.live).toMatch(/^0 10 error$/m);
  expect(watchdogs).toEqual([dir]);
  const st = await core.status();
  expect(st.filters).toEqual([r.filter]);
  expect(st.backends?.map((b) => [b.backend, b.available])).toEqual([
    ['BACKEND_BPF', false],
    ['BACKEND_DM', true],
    ['BACKEND_BLKINJECT', false],
    ['BACKEND_THROTTLE', false],
  ]);
  expect(st.backends?.[0].reason).toMatch(/not attached: call Attach first/);
  expect(await core.deleteFilter({ device: '253:0' } as never)).toMatchObject({ existed: true, removed: 1, device: { major: 253, minor: 0 } });
  expect(fake.devs.get('vg-lv')!.live).toBe(ORIGINAL);
  expect((await core.status()).filters).toEqual([]);
});

test('observe attached: auto still picks dm on a dm device; an explicit bpf filter there keeps dm off it, and the reverse', async () => {
  const { fake, dir } = setup();
  const { core } = agent(fake, dir, 'observe');
  await core.start();
  const dmf = await core.setFilter(req({ wholeDeviceOps: RW as never }));
  expect(dmf.filter?.backend).toBe('BACKEND_DM');
  expect((await refusalOf(core.setFilter(req({ wholeDeviceOps: ['OP_WRITE'] as never, backend: 'BACKEND_BPF' })))).message).toMatch(/has a dm filter \(id \d+\): delete it before setting a bpf filter/);
  expect(await core.deleteFilter({ id: dmf.filter!.id } as never)).toMatchObject({ existed: true, removed: 1 });
  expect(fake.devs.get('vg-lv')!.live).toBe(ORIGINAL);
  const bpf = await core.setFilter(req({ wholeDeviceOps: ['OP_WRITE'] as never, backend: 'BACKEND_BPF' }));
  expect(bpf.filter).toMatchObject({ backend: 'BACKEND_BPF' });
  expect(bpf.filter!.id).toBeLessThan(DM_ID_BASE);
  expect((await refusalOf(core.setFilter(req({ wholeDeviceOps: RW as never, backend: 'BACKEND_DM' })))).message).toMatch(/has a bpf filter: delete it before setting a dm filter/);
  expect(fake.devs.get('vg-lv')!.live).toBe(ORIGINAL);
});

test('blkinject asked for by name without debugfs, and a dm refusal when dm is asked for by name', async () => {
  const { fake, dir } = setup();
  const { core } = agent(fake, dir);
  await core.start();
  expect(await refusalOf(core.setFilter(req({ wholeDeviceOps: RW as never, backend: 'BACKEND_BLKINJECT' })))).toEqual({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/^backend blkinject: blkinject unavailable: debugfs is not mounted at \/sys\/kernel\/debug \(mount -t debugfs none/) });
  expect(await refusalOf(core.setFilter(req({ wholeDeviceOps: RW as never, backend: 'BACKEND_DM', probability: 0.5 })))).toEqual({
    code: 'FAILED_PRECONDITION',
    message: expect.stringMatching(/^backend dm: probability 0.5/),
  });
  expect(fake.calls.filter((c) => c[0] === 'load')).toEqual([]);
});

test('ClearFilters and Detach restore every dm table', async () => {
  const { fake, dir } = setup();
  fake.add('vg-two', '0 100 linear 7:2 0\n', 1);
  const { core } = agent(fake, dir);
  await core.start();
  await core.setFilter(req({ wholeDeviceOps: RW as never }));
  await core.setFilter(req({ device: '253:1', wholeDeviceOps: RW as never }));
  expect(await core.clearFilters()).toEqual({ removed: 2 });
  expect(fake.devs.get('vg-lv')!.live).toBe(ORIGINAL);
  expect(fake.devs.get('vg-two')!.live).toBe('0 100 linear 7:2 0\n');
  await core.setFilter(req({ wholeDeviceOps: RW as never }));
  expect(await core.detach()).toEqual({ wasAttached: false, filtersRemoved: 1 });
  expect(fake.devs.get('vg-lv')!.live).toBe(ORIGINAL);
});

test('a restarted agent restores what expired while it was gone before it serves, and starts the watchdog for the rest', async () => {
  const { fake, dir } = setup();
  fake.add('vg-two', '0 100 linear 7:2 0\n', 1);
  const first = agent(fake, dir);
  await first.core.start();
  await first.core.setFilter(req({ wholeDeviceOps: RW as never, ttlMs: '1000' as never }));
  await first.core.setFilter(req({ device: '253:1', wholeDeviceOps: RW as never, ttlMs: '600000' as never }));
  first.core.close(); // as after SIGKILL: the tables stay faulted
  now += 1000;
  const second = agent(fake, dir);
  await second.core.start();
  expect(fake.devs.get('vg-lv')!.live).toBe(ORIGINAL);
  expect(fake.devs.get('vg-two')!.live).toBe('0 100 error\n');
  expect((await second.core.status()).filters.map((f) => f.dm?.name)).toEqual(['vg-two']);
  expect(second.watchdogs).toEqual([dir]);
});
