// Counting dm filters (agent/backends/dm/count.ts) with the fake kernel and the
// in-memory device-mapper: under an observe attach a dm filter gets a companion observe
// filter on its device, put and deleted while the device is suspended, with the filter's
// ranges and ops and a TTL that ends before the dm deadline; Status shows the dm filter
// with the companion's counters and never the companion itself; delete, clear, detach
// and TTL end it; events carry the dm filter's id; where nothing observes, Status says
// why it is not counted.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { companionSpec, Companions, countsOf, RESOLUTION_MS } from '../../agent/backends/dm/count';
import { Dmsetup } from '../../agent/backends/dm/dmsetup';
import { Clock, DmFault, StateDir } from '../../agent/backends/dm/state';
import { resolveConfig } from '../../agent/config';
import type { KernelEvent } from '../../agent/events';
import { IoFilterCore } from '../../agent/service';
import type * as native from '../../native';
import type { SetFilterRequest__Output } from '../../proto/gen/iofilter/v1/SetFilterRequest';
import { FakeDm } from '../helpers/fake-dm';
import { fakeKernel, FakeFilterer, kernelEvent } from '../helpers/fake-kernel';
import { refusalOf } from '../helpers/refusal';

const ORIGINAL = '0 2048 linear 7:0 100\n2048 1024 linear 7:1 0\n';
const RW = ['OP_READ', 'OP_WRITE', 'OP_DISCARD', 'OP_WRITE_ZEROES'];
const W = ['OP_WRITE', 'OP_FLUSH', 'OP_DISCARD', 'OP_WRITE_ZEROES'];
let now = 5_000_000;
const clock: Clock = { bootId: () => 'b', boottimeMs: () => now, realtimeMs: () => now };
const cores: IoFilterCore[] = [];
const silent = pino({ level: 'silent' });

afterAll(() => {
  for (const c of cores) c.close();
});

/** An agent on a fake dm device vg-lv (253:0, 3072 sectors); `phases` records, per dmsetup call, how many bpf filters there were. */
async function agent(attach: 'none' | 'observe', dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-dm-count-')), fake = new FakeDm()) {
  if (!fake.devs.size) fake.add('vg-lv', ORIGINAL);
  const kernel = fakeKernel();
  const phases: string[] = [];
  fake.beforeCall = (args) => phases.push(`${args[0]}:${kernel.filterer?.filters.length ?? '-'}`);
  const cfg = resolveConfig({ listen: '127.0.0.1:0', attach, pinDir: '/sys/fs/bpf/unused', stateDir: dir });
  const core = new IoFilterCore(cfg, silent, kernel, [], fake.sysfs, undefined, { dmsetup: new Dmsetup(fake.exec), clock, release: '6.1.0', sysfs: fake.sysfs, spawnWatchdog: () => 0 });
  (core.backends.dm.o as { devDir?: string }).devDir = fake.devDir;
  cores.push(core);
  await core.start();
  return { core, kernel, fake, phases, dir };
}

const req = (over: Partial<SetFilterRequest__Output>) => ({ device: '253:0', ranges: [], wholeDeviceOps: [], ttlMs: '60000', maxFailures: '0', ...over }) as unknown as SetFilterRequest__Output;
const reap = (core: IoFilterCore) => (core as unknown as { reap(): void; queue: Promise<unknown> }).reap();
const settle = (core: IoFilterCore) => (core as unknown as { queue: Promise<unknown> }).queue;

test('observe attach: a companion with the filter ranges and ops, put while suspended; Status shows its counters on the dm filter, never the companion', async () => {
  const { core, kernel, phases } = await agent('observe');
  const r = await core.setFilter(req({ ranges: [{ start: '100', end: '199', ops: RW }, { start: '1000', end: '1099', ops: RW }] as never }));
  const bpf = kernel.filterer!;
  expect(bpf.filters).toHaveLength(1);
  expect(bpf.specs[0]).toEqual({
    device: { major: 253, minor: 0 }, disk: { major: 253, minor: 0 }, offset: 0n, size: 3072n,
    ranges: [{ start: 100n, end: 199n, ops: ['read', 'write', 'discard', 'write_zeroes'] }, { start: 1000n, end: 1099n, ops: ['read', 'write', 'discard', 'write_zeroes'] }],
    ttlMs: 60000 - RESOLUTION_MS,
  });
  // put after the suspend, before the resume: I/O that waits out the swap meets the new table and the counter together
  expect(phases.filter((p) => /^(load|suspend|resume)/.test(p))).toEqual(['load:0', 'suspend:0', 'resume:1']);
  expect(r.filter).toMatchObject({ backend: 'BACKEND_DM', notCounted: '', matchedIos: '0', failedIos: '0' });
  // the program counts: 3 reads in range 0, 1 write in range 1
  Object.assign(bpf.filters[0], { matchedIos: 4n, failedIos: 4n });
  Object.assign(bpf.filters[0].ranges[0], { matched: 3n, failed: 3n });
  Object.assign(bpf.filters[0].ranges[1], { matched: 1n, failed: 1n });
  const st = await core.status();
  expect(st.filters).toHaveLength(1);
  expect(st.filters[0]).toMatchObject({ id: r.filter!.id, backend: 'BACKEND_DM', notCounted: '', matchedIos: '4', failedIos: '4', ranges: [{ matched: '3', failed: '3' }, { matched: '1', failed: '1' }] });
  // the companion is not the user's: deleting it by its bpf id is refused, naming the dm filter
  expect((await refusalOf(core.deleteFilter({ id: bpf.filters[0].id } as never))).message).toMatch(new RegExp(`counts dm filter ${r.filter!.id} on vg-lv: delete that one`));
  // replacing the dm filter is not refused for "a bpf filter" on the device: the companion follows
  await core.setFilter(req({ ranges: [{ start: '500', end: '599', ops: W }] as never }));
  expect(bpf.filters).toHaveLength(1);
  expect(bpf.filters[0].ranges.map((x) => [x.start, x.ops])).toEqual([[500n, ['write', 'flush', 'discard', 'write_zeroes']]]);
  phases.length = 0;
  expect(await core.deleteFilter({ device: '253:0' } as never)).toMatchObject({ existed: true, removed: 1 });
  expect(phases.filter((p) => /^(load|suspend|resume)/.test(p))).toEqual(['load:1', 'suspend:1', 'resume:0']);
  expect(bpf.filters).toEqual([]);
  expect((await core.status()).filters).toEqual([]);
});

test('ClearFilters and Detach take the companions with the dm filters', async () => {
  const fake = new FakeDm();
  fake.add('vg-lv', ORIGINAL);
  fake.add('vg-two', '0 100 linear 7:2 0\n', 1);
  const { core, kernel } = await agent('observe', undefined, fake);
  await core.setFilter(req({ wholeDeviceOps: RW as never }));
  await core.setFilter(req({ device: '253:1', wholeDeviceOps: RW as never }));
  expect(kernel.filterer!.filters.map((f) => f.device.minor)).toEqual([0, 1]);
  expect(await core.clearFilters()).toEqual({ removed: 2 });
  expect(kernel.filterer!.filters).toEqual([]);
  await core.setFilter(req({ wholeDeviceOps: RW as never }));
  const bpf = kernel.filterer!;
  expect(bpf.filters).toHaveLength(1);
  expect(await core.detach()).toEqual({ wasAttached: true, filtersRemoved: 1 });
  expect(bpf.filters).toEqual([]);
});

test('TTL: the companion ends before the dm deadline; the dm filter keeps its final counts until the agent restores the table', async () => {
  const { core, kernel, fake } = await agent('observe');
  await core.setFilter(req({ ranges: [{ start: '100', end: '199', ops: RW }] as never, ttlMs: '1000' as never }));
  const bpf = kernel.filterer!;
  Object.assign(bpf.filters[0], { matchedIos: 2n, failedIos: 2n, remainingMs: 0 }); // the kernel stopped counting it
  Object.assign(bpf.filters[0].ranges[0], { matched: 2n, failed: 2n });
  // the bpf reaper removes expired filters before the dm deadline has passed
  bpf.reapExpired = () => bpf.deleteFilter({ device: { major: 253, minor: 0 } });
  now += 1000 - RESOLUTION_MS;
  reap(core);
  await settle(core);
  expect(bpf.filters).toEqual([]);
  expect(fake.devs.get('vg-lv')!.live).not.toBe(ORIGINAL);
  expect((await core.status()).filters[0]).toMatchObject({ backend: 'BACKEND_DM', notCounted: '', failedIos: '2', ranges: [{ matched: '2', failed: '2' }] });
  now += RESOLUTION_MS;
  reap(core);
  await settle(core);
  expect(fake.devs.get('vg-lv')!.live).toBe(ORIGINAL);
  expect((await core.status()).filters).toEqual([]);
});

test('not attached, or attached enforcing: no companion, and Status says why it is not counted; an observe attach later counts from then', async () => {
  const { core, kernel } = await agent('none');
  const r = await core.setFilter(req({ wholeDeviceOps: RW as never }));
  expect(r.filter?.notCounted).toMatch(/^not counted: the bpf program is not attached \(an observe attach counts dm filters/);
  await core.attach({ mode: 'MODE_OBSERVE' } as never);
  expect(kernel.filterer!.filters.map((f) => f.device)).toEqual([{ major: 253, minor: 0 }]);
  expect((await core.status()).filters).toMatchObject([{ backend: 'BACKEND_DM', notCounted: '' }]);
  // an enforcing attach (the fake only attaches observe: pretend): never a companion, and says so
  (kernel.filterer!.state as { mode: string }).mode = 'fmod_ret';
  kernel.filterer!.filters.splice(0);
  expect((await core.status()).filters[0].notCounted).toMatch(/attached in fmod_ret mode; dm filters are counted under an observe attach only/);
  await core.setFilter(req({ wholeDeviceOps: W as never, backend: 'BACKEND_DM' }));
  expect(kernel.filterer!.filters).toEqual([]);
});

test('a restarted agent recognises the companions left in the pins and puts one for a dm filter that has none', async () => {
  const first = await agent('observe');
  await first.core.setFilter(req({ wholeDeviceOps: RW as never }));
  first.core.close();
  const second = await agent('observe', first.dir, first.fake);
  // a fresh attach (the fake does not adopt): the counter is put again, counting from now
  expect(second.kernel.filterer!.filters.map((f) => f.device)).toEqual([{ major: 253, minor: 0 }]);
  expect((await second.core.status()).filters).toMatchObject([{ backend: 'BACKEND_DM', notCounted: '' }]);
});

test('companionSpec: the TTL ends RESOLUTION_MS before the deadline; none once it is that close; no TTL without one', () => {
  const f: DmFault = {
    version: 1, id: 0x8000_0000, name: 'vg-lv', devno: '253:0', original: ORIGINAL, faulted: '', whole: false, createdUnixMs: 0,
    ranges: [{ start: '8', end: '15', ops: ['write', 'flush', 'discard', 'write_zeroes'] }],
    deadline: { bootId: 'b', boottimeMs: now + 500, realtimeMs: 0 },
  };
  expect(companionSpec(f, 100n, clock)).toMatchObject({ ttlMs: 500 - RESOLUTION_MS, ranges: [{ start: 8n, end: 15n, ops: ['write', 'flush', 'discard', 'write_zeroes'] }] });
  expect(companionSpec({ ...f, deadline: { bootId: 'b', boottimeMs: now + RESOLUTION_MS, realtimeMs: 0 } }, 100n, clock)).toBe('its deadline has passed');
  expect(companionSpec({ ...f, deadline: { bootId: 'other boot', boottimeMs: now + 500, realtimeMs: 0 } }, 100n, clock)).toBe('its deadline has passed');
  expect(companionSpec({ ...f, deadline: null, eventsPerSecond: 0 }, 100n, clock)).not.toHaveProperty('ttlMs');
  expect(companionSpec({ ...f, deadline: null, eventsPerSecond: 0 }, 100n, clock)).toMatchObject({ eventsPerSecond: 0 });
});

test('countsOf: delay, drop-writes and corrupt fail nothing: matched only, failed 0', () => {
  const info = { matchedIos: 5n, failedIos: 5n, ranges: [{ start: 0n, end: 9n, ops: ['read'], matched: 5n, failed: 5n }] } as unknown as native.FilterInfo;
  const base = { ranges: [{ start: '0', end: '9', ops: ['read'] }] } as unknown as DmFault;
  expect(countsOf({ ...base, fault: { delay: { readMs: 5, writeMs: 0, flushMs: 0 } } }, info)).toEqual({ counted: true, matchedIos: 5n, failedIos: 0n, ranges: [{ matched: 5n, failed: 0n }] });
  expect(countsOf({ ...base, fault: { error: { status: 'ERROR_STATUS_IOERR' } } }, info)).toEqual({ counted: true, matchedIos: 5n, failedIos: 5n, ranges: [{ matched: 5n, failed: 5n }] });
  expect(countsOf(base, info)).toMatchObject({ failedIos: 5n }); // records from before fault kinds: EIO
});

test('events of a companion carry the dm filter id; FAILED for error, SPARED for kinds that fail nothing; others untouched', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-dm-count-ev-'));
  const bpf = new FakeFilterer({ mode: 'observe', pinDir: '/x', adopted: false, pinned: true, progIds: [], linkIds: [], mapIds: [], hook: 'tp_btf/block_bio_queue', maxDisks: 1, selfTest: null });
  const fake = new FakeDm();
  fake.add('vg-lv', ORIGINAL);
  fake.add('vg-two', '0 100 linear 7:2 0\n', 1);
  const c = new Companions(() => bpf, new StateDir(dir), clock, silent, fake.sysfs);
  const err = { version: 1, id: 0x8000_0001, name: 'vg-lv', devno: '253:0', original: '', faulted: '', whole: false, createdUnixMs: 0, deadline: null, ranges: [{ start: '0', end: '9', ops: ['read'] }] } as DmFault;
  const delay = { ...err, id: 0x8000_0002, name: 'vg-two', devno: '253:1', fault: { delay: { readMs: 1, writeMs: 1, flushMs: 1 } } } as DmFault;
  c.start(err);
  c.start(delay);
  const [a, b] = bpf.filters.map((f) => f.id);
  const got: KernelEvent[] = [];
  c.events((on) => (bpf.startEvents(on), () => bpf.stopEvents()))((batch) => got.push(...batch));
  bpf.emit([kernelEvent({ filterId: a }), kernelEvent({ filterId: b }), kernelEvent({ filterId: 99 })]);
  expect(got.map((e) => [e.filterId, e.outcome])).toEqual([[0x8000_0001, 'failed'], [0x8000_0002, 'spared'], [99, 'would_fail']]);
  c.stop(err);
  expect(bpf.filters.map((f) => f.device.minor)).toEqual([1]);
  expect(c.dmOf(a)).toBeUndefined();
});
