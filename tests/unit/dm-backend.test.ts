// The dm backend against an in-memory device-mapper (tests/helpers/fake-dm.ts): the
// swap sequence, byte-identical restore, state written before the swap (a crash
// between the two, or between suspend and resume, loses nothing), a table changed by
// someone else detected instead of overwritten, a suspend that hangs, TTLs on a
// boot-time clock, ids, and every refusal leaving the table untouched.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import type * as native from '../../native';
import { DmBackend } from '../../agent/backends/dm/backend';
import { Dmsetup, DmsetupError } from '../../agent/backends/dm/dmsetup';
import { Clock, DM_ID_BASE, StateDir } from '../../agent/backends/dm/state';
import { resolveDevice } from '../../agent/devices';
import { FakeDm } from '../helpers/fake-dm';

const ORIGINAL = '0 2048 linear 7:0 100\n2048 1024 linear 7:1 0\n';
const RW = ['read', 'write', 'discard', 'write_zeroes'] as native.Op[];
const W = ['write', 'flush', 'discard', 'write_zeroes'] as native.Op[];

let now = 1_000_000;
let boot = 'boot-a';
const clock: Clock = { bootId: () => boot, boottimeMs: () => now, realtimeMs: () => 1_700_000_000_000 + now };

function setup(release = '6.1.192') {
  const fake = new FakeDm();
  fake.add('vg-lv', ORIGINAL);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-dm-state-'));
  const state = new StateDir(dir);
  const faults: number[] = [];
  const mk = () =>
    new DmBackend({ state, dm: new Dmsetup(fake.exec, { callMs: 1000, suspendMs: 1000 }), clock, release, log: pino({ level: 'silent' }), sysfs: fake.sysfs, devDir: fake.devDir, onFault: () => faults.push(1) });
  const dm = mk();
  const dev = resolveDevice('253:0', fake.sysfs);
  return { fake, dir, state, dm, dev, faults, mk };
}

function spec(dev: ReturnType<typeof resolveDevice>, ranges: { start: bigint; end: bigint; ops: native.Op[] }[], extra: Partial<native.FilterSpec> = {}): native.FilterSpec {
  return { device: { major: dev.major, minor: dev.minor }, disk: { major: dev.major, minor: dev.minor }, offset: 0n, size: dev.size, ranges, ttlMs: 60_000, ...extra };
}

/** set() with the device resolved from the spec, as the service does. */
const setOn = (dm: DmBackend, s: native.FilterSpec) => dm.set(s, resolveDevice(`${s.device.major}:${s.device.minor}`, dm.o.sysfs));

const live = (fake: FakeDm) => fake.devs.get('vg-lv')!.live;

test('probe: available with the targets dmsetup lists; read-only faults named as needing 6.4', async () => {
  const { dm } = setup();
  expect(await dm.probe()).toEqual({ backend: 'BACKEND_DM', available: true, reason: expect.stringMatching(/error_reads \(Linux 6\.4\+; this is 6\.1\.192\)/), detail: 'error, flakey 1.5.0 error_writes' });
  const s2 = setup('6.12.0');
  expect((await s2.dm.probe()).detail).toBe('error, flakey 1.5.0 error_writes/error_reads');
});

test('set then delete: load, suspend --nolockfs, resume; the table after delete is byte-identical to the one before', async () => {
  const { fake, dm, dev, state, faults } = setup();
  await dm.probe();
  fake.calls = [];
  const persisted: boolean[] = [];
  fake.beforeCall = (args) => args[0] === 'load' && persisted.push(state.fault('vg-lv') !== null);
  const f = await setOn(dm, spec(dev, [{ start: 2000n, end: 2099n, ops: W }]));
  expect(persisted).toEqual([true]); // the state is on disk before the table is loaded
  expect(fake.calls.map((c) => c.join(' '))).toEqual(['table vg-lv', 'load vg-lv', 'suspend --nolockfs vg-lv', 'resume vg-lv']);
  expect(live(fake)).toBe('0 2000 linear 7:0 100\n2000 48 flakey 7:0 2100 0 1 1 error_writes\n2048 52 flakey 7:1 0 0 1 1 error_writes\n2100 972 linear 7:1 52\n');
  expect(f).toMatchObject({ backend: 'BACKEND_DM', id: DM_ID_BASE, dm: { name: 'vg-lv', originalTable: ORIGINAL, table: live(fake) }, notCounted: expect.stringMatching(/^not counted/), hasExpiry: true, remainingMs: '60000' });
  expect(faults).toHaveLength(1); // the watchdog is started for a fault with a deadline
  expect(state.fault('vg-lv')).toMatchObject({ original: ORIGINAL, faulted: live(fake), deadline: { bootId: 'boot-a', boottimeMs: now + 60_000 } });
  expect(await dm.delete({ device: { major: 253, minor: 0 } })).toBe(1);
  expect(live(fake)).toBe(ORIGINAL);
  expect(state.faults()).toEqual([]);
  expect(await dm.delete({ id: f.id! })).toBe(0);
});

test('replacing a fault keeps the first original; delete restores it', async () => {
  const { fake, dm, dev, state } = setup();
  await dm.probe();
  const a = await setOn(dm, spec(dev, [{ start: 0n, end: 9n, ops: RW }]));
  const b = await setOn(dm, spec(dev, [{ start: 3000n, end: 3071n, ops: RW }]));
  expect(b.id).toBe(a.id);
  expect(live(fake)).toBe('0 2048 linear 7:0 100\n2048 952 linear 7:1 0\n3000 72 error\n');
  expect(state.fault('vg-lv')!.original).toBe(ORIGINAL);
  await dm.clear();
  expect(live(fake)).toBe(ORIGINAL);
});

test('a load the kernel rejects: nothing changed, the state as before', async () => {
  const { fake, dm, dev, state } = setup();
  await dm.probe();
  fake.failNext.load = new DmsetupError('dmsetup load vg-lv: device-mapper: reload ioctl on vg-lv failed: Invalid argument');
  await expect(setOn(dm, spec(dev, [{ start: 0n, end: 9n, ops: RW }]))).rejects.toThrow(/loading the table into vg-lv failed, nothing changed: .*Invalid argument/);
  expect(live(fake)).toBe(ORIGINAL);
  expect(fake.devs.get('vg-lv')!.inactive).toBeNull();
  expect(state.faults()).toEqual([]);
});

test('a suspend that does not finish in time: inactive table dropped, device resumed, reported; nothing changed', async () => {
  const { fake, dm, dev, state } = setup();
  await dm.probe();
  fake.failNext.suspend = new DmsetupError('dmsetup suspend --nolockfs vg-lv: no answer in 1000 ms', true);
  await expect(setOn(dm, spec(dev, [{ start: 0n, end: 9n, ops: RW }]))).rejects.toThrow(/suspending vg-lv failed \(the suspend did not finish \(in-flight I\/O did not complete\)\); resumed with its previous table/);
  expect(live(fake)).toBe(ORIGINAL);
  expect(fake.devs.get('vg-lv')!.suspended).toBe(false);
  expect(state.faults()).toEqual([]);
});

test('crash between persisting and the swap: restore finds the original in force and only forgets the fault', async () => {
  const { fake, dm, dev, state } = setup();
  await dm.probe();
  await setOn(dm, spec(dev, [{ start: 0n, end: 9n, ops: RW }]));
  const f = state.fault('vg-lv')!;
  // as if the agent died after writing the state but before loading: the original is live
  fake.devs.get('vg-lv')!.live = ORIGINAL;
  fake.calls = [];
  expect(await dm.delete({ id: f.id })).toBe(1);
  expect(fake.calls.map((c) => c[0])).toEqual(['info', 'table']); // no load: nothing to undo
  expect(live(fake)).toBe(ORIGINAL);
  expect(state.faults()).toEqual([]);
});

test('crash between suspend and resume: the device is resumed with its live table, then restored', async () => {
  const { fake, dm, dev, state } = setup();
  await dm.probe();
  await setOn(dm, spec(dev, [{ start: 0n, end: 9n, ops: RW }]));
  const d = fake.devs.get('vg-lv')!;
  const faulted = d.live;
  Object.assign(d, { live: ORIGINAL, inactive: faulted, suspended: true }); // died before resume
  await dm.clear();
  expect(d).toMatchObject({ live: ORIGINAL, inactive: null, suspended: false });
  expect(state.faults()).toEqual([]);
});

test('a table someone else changed while faulted: FAILED_PRECONDITION with both tables, not overwritten, state kept', async () => {
  const { fake, dm, dev, state } = setup();
  await dm.probe();
  await setOn(dm, spec(dev, [{ start: 0n, end: 9n, ops: RW }]));
  const theirs = '0 4096 linear 7:2 0\n'; // lvextend, say
  fake.devs.get('vg-lv')!.live = theirs;
  const err = await dm.delete({ device: { major: 253, minor: 0 } }).then(() => null, (e) => e);
  expect(err.code).toBe(9); // FAILED_PRECONDITION
  expect(err.message).toMatch(/table of vg-lv was changed by someone else while faulted.*not overwritten/s);
  expect(err.message).toContain(theirs.trim());
  expect(err.message).toContain(ORIGINAL.trim().split('\n')[1]);
  expect(live(fake)).toBe(theirs);
  expect(state.fault('vg-lv')).not.toBeNull();
  // setting over it is refused the same way
  await expect(setOn(dm, spec(dev, [{ start: 0n, end: 9n, ops: RW }]))).rejects.toThrow(/changed by someone else/);
  expect(live(fake)).toBe(theirs);
});

test('TTL: restored at the boot-time deadline, not before; a deadline from another boot has passed', async () => {
  const { fake, dm, dev, state, mk } = setup();
  await dm.probe();
  await setOn(dm, spec(dev, [{ start: 0n, end: 9n, ops: RW }], { ttlMs: 5000 }));
  now += 4990;
  expect(await dm.restoreExpired()).toBe(0);
  expect(dm.nextDeadlineMs()).toBe(10);
  expect(live(fake)).not.toBe(ORIGINAL);
  now += 10;
  expect(await mk().restoreExpired()).toBe(1); // another process (the watchdog) with the same state dir
  expect(live(fake)).toBe(ORIGINAL);
  expect(state.faults()).toEqual([]);
  await setOn(dm, spec(dev, [{ start: 0n, end: 9n, ops: RW }], { ttlMs: 3_600_000 }));
  boot = 'boot-b';
  try {
    expect(await dm.restoreExpired()).toBe(1);
  } finally {
    boot = 'boot-a';
  }
  expect(live(fake)).toBe(ORIGINAL);
});

test('ids: 2^31 and up, unique, persisted across processes', async () => {
  const { dm, dev, state, fake } = setup();
  await dm.probe();
  const a = await setOn(dm, spec(dev, [{ start: 0n, end: 9n, ops: RW }]));
  await dm.delete({ id: a.id! });
  fake.add('vg-other', '0 100 linear 7:3 0\n', 1);
  const b = await setOn(dm, spec(resolveDevice('253:1', fake.sysfs), [{ start: 0n, end: 9n, ops: RW }]));
  expect(a.id).toBe(DM_ID_BASE);
  expect(b.id).toBe(DM_ID_BASE + 1);
  expect(new StateDir(state.dir).nextId()).toBe(DM_ID_BASE + 2);
  expect(fs.readdirSync(state.dir).filter((f) => f.includes('.tmp.'))).toEqual([]); // atomic writes leave no temp files
});

describe('refusals: each with its reason, the table untouched and nothing loaded', () => {
  // every case has 4 elements: with fewer, jest passes `done` as the last argument
  const cases: [string, (d: ReturnType<typeof resolveDevice>) => native.FilterSpec, RegExp, string | null][] = [
    ['probability', (d) => spec(d, [{ start: 0n, end: 9n, ops: RW }], { probability: 0.5 }), /probability 0.5: a dm error segment fails every I\/O/, null],
    ['cgroup scope', (d) => spec(d, [{ start: 0n, end: 9n, ops: RW }], { cgroup: { id: 42n, level: 2 } }), /cgroup scope: a dm table fails every I\/O to its sectors, whoever sends it/, null],
    ['max failures', (d) => spec(d, [{ start: 0n, end: 9n, ops: RW }], { maxFailures: 3n }), /max_failures: a dm table cannot count/, null],
    ['write alone', (d) => spec(d, [{ start: 0n, end: 9n, ops: ['write'] }]), /ranges\[0\] \(0-9\) ops write: no device-mapper target fails exactly these/, null],
    ['flush alone', (d) => spec(d, [{ start: 0n, end: 9n, ops: ['flush'] }]), /ops flush: no device-mapper target/, null],
    ['read on 6.1', (d) => spec(d, [{ start: 0n, end: 9n, ops: ['read'] }]), /needs Linux 6.4 or later, this kernel is 6.1.192/, null],
    ['a zero target', (d) => spec(d, [{ start: 0n, end: 9n, ops: RW }]), /maps sectors 0-99 with target "zero".*device below it \(\/dev\/loop0\) could be faulted instead/, '0 100 zero\n'],
  ];
  test.each(cases)('%s', async (_n, mkSpec, why, table) => {
    const { fake, dm, state } = setup();
    fake.add('odd', table ?? '0 100 linear 7:3 0\n', 1);
    await dm.probe();
    const dev = resolveDevice(table ? '253:1' : '253:0', fake.sysfs);
    const before = new Map([...fake.devs].map(([k, v]) => [k, v.live]));
    fake.calls = [];
    const r = await dm.refusal(mkSpec(dev), dev);
    expect(r).toMatch(why);
    await expect(dm.set(mkSpec(dev), dev)).rejects.toThrow(why);
    expect(fake.calls.filter((c) => !['table'].includes(c[0]))).toEqual([]);
    expect(new Map([...fake.devs].map(([k, v]) => [k, v.live]))).toEqual(before);
    expect(state.faults()).toEqual([]);
  });
  test('not a dm device', async () => {
    const { dm, fake } = setup();
    await dm.probe();
    fs.mkdirSync(path.join(fake.sysfs, 'devices', 'virtual', 'block', 'loop0'), { recursive: true });
    fs.writeFileSync(path.join(fake.sysfs, 'devices', 'virtual', 'block', 'loop0', 'dev'), '7:0\n');
    fs.writeFileSync(path.join(fake.sysfs, 'devices', 'virtual', 'block', 'loop0', 'size'), '100\n');
    fs.symlinkSync(path.join(fake.sysfs, 'devices', 'virtual', 'block', 'loop0'), path.join(fake.sysfs, 'dev', 'block', '7:0'));
    const dev = resolveDevice('7:0', fake.sysfs);
    expect(await dm.refusal(spec(dev, [{ start: 0n, end: 9n, ops: RW }]), dev)).toMatch(/loop0 \(7:0\) is not a device-mapper device: .*iofilterctl wrap/);
  });
});
