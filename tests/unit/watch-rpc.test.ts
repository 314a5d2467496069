// The Watch RPC over real gRPC against an in-process agent whose fake kernel delivers
// events as the native ring-buffer reader will: the fields of each event, selection
// by device/outcome/filter, bad requests, attach state, a stalled client that loses
// events (and is told how many) without growing the agent's queue while another
// client keeps receiving everything, viewer role, and shutdown ending the streams.
import * as fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { resolveConfig } from '../../agent/config';
import { Authenticator } from '../../agent/security';
import { Agent, createAgent } from '../../agent/server';
import { IoFilterClient } from '../../client';
import type { WatchRequest } from '../../proto/gen/iofilter/v1/WatchRequest';
import { fakeKernel, fakeSysfs, kernelEvent } from '../helpers/fake-kernel';
import { until } from '../helpers/wait';
import { watchStream } from '../helpers/watch';

const QUEUE = 32;
const sysfs = fakeSysfs();
const kernel = fakeKernel();
let agent: Agent;
let client: IoFilterClient;

beforeAll(async () => {
  const cfg = resolveConfig({ listen: '127.0.0.1:0', attach: 'observe', pinDir: '/sys/fs/bpf/unused', watch: { queueEvents: QUEUE, maxWatchers: 8 } });
  agent = await createAgent(cfg, pino({ level: 'silent' }), kernel, sysfs);
  client = new IoFilterClient(agent.address, { timeoutMs: 5000 });
});
afterAll(async () => {
  client.close();
  await agent.stop(1000);
  fs.rmSync(sysfs, { recursive: true, force: true });
});

const watch = (req: WatchRequest) => watchStream(client, req);
const errorOf = (w: ReturnType<typeof watch>) => w.accepted.then(() => null, (e) => e);
const emit = (...batch: Parameters<typeof kernelEvent>[0][]) => expect(kernel.filterer!.emit(batch.map(kernelEvent))).toBe(true);

test('events arrive with every field, device names resolved; none for I/O the watch did not select', async () => {
  const w = watch({ device: '7:1', outcomes: ['OUTCOME_WOULD_FAIL'] });
  await w.accepted;
  emit(
    { dev: { major: 7, minor: 1 }, disk: { major: 7, minor: 0 }, sector: 2148n, devSector: 100n, nrSectors: 8, ops: ['write'], filterId: 3, rangeIndex: 1, pid: 777, comm: 'fio', cgroupId: 4321n, timeUnixNs: 1_700_000_000_000_000_042n },
    { sector: 10n, devSector: 10n }, // the disk, outside the partition
    { dev: { major: 8, minor: 0 }, disk: { major: 8, minor: 0 } }, // another disk
    { dev: { major: 7, minor: 1 }, disk: { major: 7, minor: 0 }, sector: 2048n, devSector: 0n, outcome: 'spared' }, // not an outcome asked for
    { sector: 2050n, devSector: 2050n, nrSectors: 4, pid: 778 }, // through the disk, inside the partition
  );
  await until(() => w.ios.length >= 2, 'two events');
  expect(w.ios[0]).toEqual({
    timeUnixNs: '1700000000000000042',
    device: { major: 7, minor: 1, name: 'loop0p1', diskName: 'loop0', partition: true, sizeSectors: '131072', startSector: '2048' },
    disk: { major: 7, minor: 0, name: 'loop0', diskName: 'loop0', partition: false, sizeSectors: '2097152', startSector: '0' },
    sector: '2148', deviceSector: '100', nrSectors: 8, ops: ['OP_WRITE'], filterId: 3, rangeIndex: 1,
    outcome: 'OUTCOME_WOULD_FAIL', pid: 777, comm: 'fio', cgroupId: '4321',
  });
  expect(w.ios[1]).toMatchObject({ device: { name: 'loop0' }, sector: '2050', pid: 778 });
  // a last selected event proves nothing else was on its way before it
  emit({ dev: { major: 7, minor: 1 }, disk: { major: 7, minor: 0 }, pid: 999 });
  await until(() => w.ios.length >= 3, 'the last event');
  expect(w.ios.map((e) => e.pid)).toEqual([777, 778, 999]);
  expect(w.lost).toEqual([]);
  w.call.cancel();
});

test.each([
  [{ outcomes: ['OUTCOME_UNSPECIFIED'] }, 'INVALID_ARGUMENT', /outcomes\[0\]: unknown outcome/],
  [{ device: '7:99' }, 'NOT_FOUND', /no block device 7:99/],
  [{ device: '/dev/null' }, 'INVALID_ARGUMENT', /not a block device/],
] as [WatchRequest, string, RegExp][])('bad request %j -> %s, and no watcher is left behind', async (req, code, msg) => {
  const err = await errorOf(watch(req));
  expect(grpc.status[err?.code]).toBe(code);
  expect(err.details).toMatch(msg);
  expect(agent.hub.stats().watchers).toBe(0);
});

test('not attached: FAILED_PRECONDITION; a stream opened before survives Detach and a new Attach', async () => {
  const w = watch({});
  await w.accepted;
  const before = kernel.filterer!;
  expect(before.eventsStarted).toBe(true);
  await client.detach();
  expect(before.eventsStarted).toBe(false); // the reader stopped with the program
  const err = await errorOf(watch({}));
  expect(grpc.status[err?.code]).toBe('FAILED_PRECONDITION');
  expect(err.details).toMatch(/not attached/);
  await client.attach('observe');
  expect(kernel.filterer).not.toBe(before);
  emit({ pid: 1234 });
  await until(() => w.ios.length === 1, 'the event after re-attach');
  expect(w.ios[0].pid).toBe(1234);
  w.call.cancel();
  await until(() => agent.hub.stats().watchers === 0, 'the cancelled watcher to be gone');
});

test('a stalled client loses events and is told how many; its queue stays bounded; the other client gets every event', async () => {
  const stalled = watch({});
  const fast = watch({});
  await Promise.all([stalled.accepted, fast.accepted]);
  // one event read, then the stalled client stops reading (as when its output is blocked).
  // (A grpc-js client that never read at all buffers on its own side, not the agent's.)
  emit({ sector: 0n });
  await until(() => stalled.ios.length === 1 && fast.ios.length === 1, 'the first event on both');
  stalled.call.pause();
  const batch = 25; // below the queue bound: paced by the fast client, it never needs to drop
  const rounds = 800;
  let maxQueued = 0;
  for (let i = 1; i <= rounds; i++) {
    kernel.filterer!.emit(Array.from({ length: batch }, (_, k) => kernelEvent({ sector: BigInt(i * batch + k) })));
    maxQueued = Math.max(maxQueued, agent.hub.stats().largestQueue);
    await until(() => fast.ios.length === 1 + i * batch, `the fast client to have ${1 + i * batch} events`);
  }
  const total = 1 + rounds * batch;
  expect(fast.ios).toHaveLength(total);
  expect(fast.lost).toEqual([]);
  expect(maxQueued).toBe(QUEUE); // the stalled client's queue filled to its bound, never past it
  expect(agent.hub.stats().lostSlow).toBeGreaterThan(0n);

  stalled.call.resume(); // the client reads again
  await until(() => stalled.ios.length + stalled.lostOf() === total, 'the stalled client to account for every event');
  // what reached it is the little the transport and the bounded queue held; the rest was counted
  expect(stalled.ios.length).toBeLessThan(total / 4);
  expect(stalled.lost.every((l) => l.reason === 'slow client')).toBe(true);
  // the events it got are in order, and the loss sits in the gap
  const sectors = stalled.ios.map((e) => Number(e.sector));
  expect(sectors).toEqual([...sectors].sort((a, b) => a - b));
  stalled.call.cancel();
  fast.call.cancel();
});

test('Watch is a viewer method, like Status; mutations need an operator', () => {
  const auth = new Authenticator(resolveConfig({}));
  const viewer = { peer: 'p', identity: 'dashboard', role: 'viewer' as const };
  expect(auth.authorize(viewer, 'Watch')).toBeNull();
  expect(auth.authorize(viewer, 'Status')).toBeNull();
  expect(auth.authorize(viewer, 'SetFilter')).toMatchObject({ code: grpc.status.PERMISSION_DENIED });
  expect(auth.authorize({ ...viewer, role: null }, 'Watch')).toMatchObject({ code: grpc.status.PERMISSION_DENIED });
});

test('stopping the agent ends open streams with UNAVAILABLE instead of waiting for them', async () => {
  const k = fakeKernel();
  const a = await createAgent(resolveConfig({ listen: '127.0.0.1:0', attach: 'observe', pinDir: '/x' }), pino({ level: 'silent' }), k, sysfs);
  const c = new IoFilterClient(a.address);
  try {
    const call = c.watch({});
    await new Promise((r) => call.once('metadata', r));
    const status = new Promise<grpc.StatusObject>((r) => call.on('status', r));
    call.on('error', () => undefined);
    await a.stop(600_000); // a grace period longer than the test's timeout: only ending the streams lets it return
    expect(await status).toMatchObject({ code: grpc.status.UNAVAILABLE, details: 'the agent is shutting down' });
  } finally {
    c.close();
  }
});
