// The Watch event hub without gRPC: fan-out to several watchers, each event converted
// once, selectors (device with partitions, outcome, filter id), the bounded queue of a
// stalled watcher and its Lost count while another keeps receiving, kernel-side
// losses turned into Lost messages, and the device-name cache.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { status } from '@grpc/grpc-js';
import { EventHub, KernelDrops, KernelEvent, LOST_RATE, LOST_RING, LOST_SLOW, Selector, Sink } from '../../agent/events';
import { compileSelector, DeviceNames, toIoEvent } from '../../agent/watch';
import type { WatchEvent } from '../../proto/gen/iofilter/v1/WatchEvent';
import type { WatchRequest__Output } from '../../proto/gen/iofilter/v1/WatchRequest';
import { fakeSysfs, kernelEvent } from '../helpers/fake-kernel';

const sysfs = fakeSysfs();
afterAll(() => fs.rmSync(sysfs, { recursive: true, force: true }));

/** A sink that records what it got; `accept` says how many more writes return true (Infinity: always). */
class TestSink implements Sink {
  got: WatchEvent[] = [];
  writes = 0;
  accept = Infinity;
  closed = false;
  private drain?: () => void;
  write(m: WatchEvent) {
    this.writes++;
    this.got.push(m);
    return this.accept-- > 0;
  }
  onDrain(fn: () => void) {
    this.drain = fn;
  }
  /** The transport caught up: writes succeed again. */
  release() {
    this.accept = Infinity;
    const d = this.drain;
    this.drain = undefined;
    d?.();
  }
  close() {
    this.closed = true;
  }
  get ios() {
    return this.got.filter((m) => m.io).map((m) => m.io!);
  }
  get lost() {
    return this.got.filter((m) => m.lost).map((m) => m.lost!);
  }
}

const all: Selector = { event: () => true, filter: () => true };
const req = (r: Partial<WatchRequest__Output>): WatchRequest__Output => ({ device: '', outcomes: [], filterId: 0, ...r });
const names = new DeviceNames(sysfs);

function hub(opts: { queueEvents?: number; maxWatchers?: number; drops?: () => Promise<KernelDrops> } = {}) {
  let conversions = 0;
  let deliver: ((b: KernelEvent[]) => void) | undefined;
  let stops = 0;
  const h = new EventHub({
    queueEvents: opts.queueEvents ?? 64,
    maxWatchers: opts.maxWatchers ?? 8,
    toWire: (e) => (conversions++, toIoEvent(e, names)),
    drops: opts.drops,
  });
  h.attach((cb) => {
    deliver = cb;
    return () => void stops++;
  });
  return { h, emit: (b: KernelEvent[]) => deliver!(b), conversions: () => conversions, stops: () => stops };
}

const seq = (n: number, over: Partial<KernelEvent> = {}) => Array.from({ length: n }, (_, i) => kernelEvent({ sector: BigInt(i), devSector: BigInt(i), ...over }));

test('fan-out: every watcher gets what it selected, in order; each event is converted once', () => {
  const { h, emit, conversions } = hub();
  const a = new TestSink();
  const b = new TestSink();
  h.subscribe(all, a);
  h.subscribe(compileSelector(req({ outcomes: ['OUTCOME_FAILED'] }), sysfs), b);
  emit([kernelEvent({ sector: 1n, outcome: 'would_fail' }), kernelEvent({ sector: 2n, outcome: 'failed' }), kernelEvent({ sector: 3n, outcome: 'spared' })]);
  expect(a.ios.map((e) => e.sector)).toEqual(['1', '2', '3']);
  expect(b.ios.map((e) => [e.sector, e.outcome])).toEqual([['2', 'OUTCOME_FAILED']]);
  expect(conversions()).toBe(3);
  expect(h.stats()).toMatchObject({ watchers: 2, queued: 0, lostSlow: 0n, received: 3 });
});

test('no watcher: events are consumed and counted, never converted', () => {
  const { h, emit, conversions } = hub();
  emit(seq(10));
  expect(conversions()).toBe(0);
  expect(h.stats().received).toBe(10);
});

test('the wire event carries every field, device names resolved', () => {
  const e = toIoEvent(
    kernelEvent({ dev: { major: 7, minor: 1 }, disk: { major: 7, minor: 0 }, sector: 2148n, devSector: 100n, nrSectors: 16, ops: ['write', 'flush'], filterId: 9, rangeIndex: 3, outcome: 'failed', pid: 31337, comm: 'postgres', cgroupId: 123456789012345n, timeUnixNs: 1_700_000_000_000_000_001n }),
    names,
  );
  expect(e).toEqual({
    timeUnixNs: '1700000000000000001',
    device: { major: 7, minor: 1, name: 'loop0p1', diskName: 'loop0', partition: true, sizeSectors: '131072', startSector: '2048' },
    disk: { major: 7, minor: 0, name: 'loop0', diskName: 'loop0', partition: false, sizeSectors: '2097152', startSector: '0' },
    sector: '2148', deviceSector: '100', nrSectors: 16, ops: ['OP_WRITE', 'OP_FLUSH'], filterId: 9, rangeIndex: 3,
    outcome: 'OUTCOME_FAILED', pid: 31337, comm: 'postgres', cgroupId: '123456789012345',
  });
});

describe('selectors', () => {
  const viaPart = (devSector: bigint, n = 8) => kernelEvent({ dev: { major: 7, minor: 1 }, disk: { major: 7, minor: 0 }, sector: 2048n + devSector, devSector, nrSectors: n });
  const viaDisk = (sector: bigint, n = 8) => kernelEvent({ sector, devSector: sector, nrSectors: n });
  const other = kernelEvent({ dev: { major: 8, minor: 0 }, disk: { major: 8, minor: 0 } });

  test('a disk shows its own I/O and its partitions\'', () => {
    const s = compileSelector(req({ device: '7:0' }), sysfs);
    expect([viaDisk(0n), viaPart(5n), other].map(s.event)).toEqual([true, true, false]);
  });
  test('a partition shows its I/O and I/O sent through the disk to its sectors, not the disk\'s other sectors', () => {
    const s = compileSelector(req({ device: '7:1' }), sysfs);
    // partition 7:1 is disk sectors 2048..133119
    expect([viaPart(0n), viaDisk(2040n, 8), viaDisk(2041n, 8), viaDisk(133119n, 1), viaDisk(133120n, 8), viaDisk(2048n, 0), other].map(s.event))
      .toEqual([true, false, true, true, false, false, false]);
  });
  test('outcomes and filter id', () => {
    const s = compileSelector(req({ outcomes: ['OUTCOME_WOULD_FAIL', 'OUTCOME_SPARED'], filterId: 4 }), sysfs);
    expect([
      kernelEvent({ filterId: 4, outcome: 'would_fail' }),
      kernelEvent({ filterId: 4, outcome: 'spared' }),
      kernelEvent({ filterId: 4, outcome: 'failed' }),
      kernelEvent({ filterId: 5, outcome: 'would_fail' }),
    ].map(s.event)).toEqual([true, true, false, false]);
  });
  test('which filters\' kernel losses concern a watcher', () => {
    const f = (id: number, major: number, minor: number, dmin = minor) => ({ id, device: { major, minor }, disk: { major, minor: dmin } });
    const disk = compileSelector(req({ device: '7:0' }), sysfs);
    const part = compileSelector(req({ device: '7:1' }), sysfs);
    const byId = compileSelector(req({ filterId: 2 }), sysfs);
    expect([f(1, 7, 0), f(2, 7, 1, 0), f(3, 8, 0)].map(disk.filter)).toEqual([true, true, false]);
    expect([f(1, 7, 0), f(2, 7, 1, 0), f(3, 7, 2, 0)].map(part.filter)).toEqual([true, true, false]);
    expect([f(1, 7, 0), f(2, 8, 0)].map(byId.filter)).toEqual([false, true]);
  });
  test.each([
    [{ outcomes: ['OUTCOME_UNSPECIFIED'] }, 'INVALID_ARGUMENT', /outcomes\[0\]: unknown outcome "OUTCOME_UNSPECIFIED"/],
    [{ outcomes: ['OUTCOME_FAILED', 7] }, 'INVALID_ARGUMENT', /outcomes\[1\]: unknown outcome 7/],
    [{ device: '7:99' }, 'NOT_FOUND', /no block device 7:99/],
    [{ device: 'sda' }, 'INVALID_ARGUMENT', /device "sda" is neither MAJ:MIN/],
  ])('bad request %j -> %s', (r, code, msg) => {
    let err: any;
    try {
      compileSelector(req(r as Partial<WatchRequest__Output>), sysfs);
    } catch (e) {
      err = e;
    }
    expect(status[err?.code]).toBe(code);
    expect(err.message).toMatch(msg);
  });
});

describe('a stalled watcher', () => {
  test('queues at most its bound, loses the rest and is told how many where the gap is; the other keeps receiving everything', () => {
    const limit = 16;
    const { h, emit } = hub({ queueEvents: limit });
    const stalled = new TestSink();
    stalled.accept = 0; // its first write already fills the transport
    const fast = new TestSink();
    const ws = h.subscribe(all, stalled);
    h.subscribe(all, fast);
    const total = 20_000;
    for (let i = 0; i < total; i += 100) {
      emit(seq(100, { timeUnixNs: BigInt(i) }));
      expect(ws.queued).toBeLessThanOrEqual(limit);
      expect(ws.backlog).toBeLessThanOrEqual(limit + 1); // + the loss marker at its end
    }
    expect(fast.ios).toHaveLength(total);
    expect(fast.lost).toEqual([]);
    expect(stalled.writes).toBe(1); // nothing written after write() said stop
    expect(h.stats()).toMatchObject({ queued: limit, lostSlow: BigInt(total - 1 - limit) });

    stalled.release(); // 'drain'
    expect(stalled.ios).toHaveLength(1 + limit);
    expect(stalled.lost).toEqual([{ count: String(total - 1 - limit), reason: LOST_SLOW }]);
    emit(seq(3, { sector: 999_999n }));
    // the order tells where the gap was: the written and queued events, the loss, then new events
    expect(stalled.got.map((m) => (m.lost ? 'lost' : m.io!.sector === '999999' ? 'new' : 'old'))).toEqual([
      ...Array(1 + limit).fill('old'), 'lost', 'new', 'new', 'new',
    ]);
    const told = stalled.ios.length + stalled.lost.reduce((n, l) => n + Number(l.count), 0);
    expect(told).toBe(total + 3); // every event is either delivered or counted
  });

  test('a watcher gone keeps counting in the losses; unsubscribing stops deliveries', () => {
    const { h, emit } = hub({ queueEvents: 2 });
    const s = new TestSink();
    s.accept = 0;
    const w = h.subscribe(all, s);
    emit(seq(10));
    h.unsubscribe(w);
    emit(seq(10));
    expect(s.writes).toBe(1);
    expect(h.stats()).toMatchObject({ watchers: 0, queued: 0, lostSlow: 7n }); // 1 written, 2 queued
  });

  test('loss markers stay bounded however long it stalls, also with kernel losses in between', async () => {
    let n = 0n;
    const drops = async (): Promise<KernelDrops> => ({ ringFull: n, filters: [{ id: 1, device: { major: 7, minor: 0 }, disk: { major: 7, minor: 0 }, dropped: n * 2n }] });
    const { h, emit } = hub({ queueEvents: 4, drops });
    const s = new TestSink();
    s.accept = 0;
    const w = h.subscribe(all, s);
    await h.poll(); // baseline
    for (let i = 0; i < 500; i++) {
      emit(seq(3));
      n++;
      await h.poll();
      // 4 events; its one write freed one slot, so two gaps of at most 3 markers (one per reason)
      expect(w.backlog).toBeLessThanOrEqual(4 + 2 * 3);
    }
    s.release();
    const lost: Record<string, number> = {};
    for (const l of s.lost) lost[l.reason!] = (lost[l.reason!] ?? 0) + Number(l.count);
    expect(lost).toEqual({ [LOST_SLOW]: 500 * 3 - 1 - 4, [LOST_RING]: 500, [LOST_RATE]: 1000 });
  });
});

test('kernel losses: rate-limit drops go to the watchers of that filter, ring-buffer losses to all; counter resets count whole', async () => {
  const counters = { ring: 10n, f1: 100n, f2: 0n };
  const drops = async (): Promise<KernelDrops> => ({
    ringFull: counters.ring,
    filters: [
      { id: 1, device: { major: 7, minor: 1 }, disk: { major: 7, minor: 0 }, dropped: counters.f1 },
      { id: 2, device: { major: 8, minor: 0 }, disk: { major: 8, minor: 0 }, dropped: counters.f2 },
    ],
  });
  const { h } = hub({ drops });
  const one = new TestSink();
  const two = new TestSink();
  h.subscribe(compileSelector(req({ filterId: 1 }), sysfs), one);
  h.subscribe(compileSelector(req({ device: '7:0' }), sysfs), two);
  await h.poll(); // the first poll is the baseline: losses from before anyone watched are not reported
  await h.poll();
  expect([one.got, two.got]).toEqual([[], []]);
  counters.ring += 2n;
  counters.f1 += 5n;
  counters.f2 += 7n;
  await h.poll();
  expect(one.lost).toEqual([{ count: '2', reason: LOST_RING }, { count: '5', reason: LOST_RATE }]);
  expect(two.lost).toEqual([{ count: '2', reason: LOST_RING }, { count: '5', reason: LOST_RATE }]); // filter 2 is on another disk
  counters.f1 = 3n; // replaced: the counter started again
  await h.poll();
  expect(one.lost.at(-1)).toEqual({ count: '3', reason: LOST_RATE });
});

test('attach starts the source, detach stops it, watchers survive a re-attach; close ends every stream', () => {
  const { h, emit, stops } = hub();
  const s = new TestSink();
  h.subscribe(all, s);
  emit(seq(1));
  h.detach();
  expect([h.state, stops()]).toEqual(['detached', 1]);
  let again: ((b: KernelEvent[]) => void) | undefined;
  h.attach((cb) => ((again = cb), () => undefined));
  again!(seq(2));
  expect(s.ios).toHaveLength(3);
  h.attach(null);
  expect(h.state).toBe('no-events');
  h.attach(() => {
    throw new Error('ring buffer map missing');
  });
  expect([h.state, h.unavailable]).toEqual(['no-events', 'kernel events cannot be read: ring buffer map missing']);
  h.close();
  expect([s.closed, h.stats().watchers, h.state]).toEqual([true, 0, 'detached']);
});

test('at most maxWatchers streams: the next gets RESOURCE_EXHAUSTED', () => {
  const { h } = hub({ maxWatchers: 2 });
  h.subscribe(all, new TestSink());
  const w = h.subscribe(all, new TestSink());
  let err: any;
  try {
    h.subscribe(all, new TestSink());
  } catch (e) {
    err = e;
  }
  expect(status[err?.code]).toBe('RESOURCE_EXHAUSTED');
  h.unsubscribe(w);
  expect(() => h.subscribe(all, new TestSink())).not.toThrow();
});

test('device names are resolved once per device, then cached until they are older than the TTL', () => {
  const tree = fakeSysfs();
  try {
    const cached = new DeviceNames(tree, 60_000);
    const fresh = new DeviceNames(tree, 0);
    expect(cached.ref({ major: 7, minor: 1 }).name).toBe('loop0p1');
    expect(fresh.ref({ major: 7, minor: 1 }).name).toBe('loop0p1');
    fs.unlinkSync(path.join(tree, 'dev', 'block', '7:1')); // the device goes away
    expect(cached.ref({ major: 7, minor: 1 }).name).toBe('loop0p1');
    expect(cached.disk({ major: 7, minor: 1 })).toEqual({ major: 7, minor: 0 });
    expect(fresh.ref({ major: 7, minor: 1 })).toEqual({ major: 7, minor: 1 }); // numbers only once it is gone
  } finally {
    fs.rmSync(tree, { recursive: true, force: true });
  }
});
