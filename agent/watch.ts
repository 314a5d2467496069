// The Watch RPC over the event hub (agent/events.ts): validates a WatchRequest into a
// selector, turns kernel events into wire IoEvents with device names resolved once
// per device, serves the gRPC stream with backpressure (write() false -> wait for
// 'drain'), and connects the hub to the native binding's ring-buffer reader.
import * as grpc from '@grpc/grpc-js';
import type * as native from '../native';
import type { DeviceRef } from '../proto/gen/iofilter/v1/DeviceRef';
import type { IoEvent } from '../proto/gen/iofilter/v1/IoEvent';
import type { WatchEvent } from '../proto/gen/iofilter/v1/WatchEvent';
import type { WatchRequest__Output } from '../proto/gen/iofilter/v1/WatchRequest';
import { NativeOutcome, opToWire, outcomeFromWire, outcomeToWire } from '../proto/names';
import { DeviceInfo, resolveDevice } from './devices';
import { invalid, precondition, RpcError } from './errors';
import type { EventHub, EventSource, KernelDrops, KernelEvent, Selector } from './events';
import type { IoFilterCore } from './service';

import type { Device } from '../native';
const same = (a: Device, b: Device) => a.major === b.major && a.minor === b.minor;

/** What the request asks for, as a predicate over kernel events. Bad input throws an RpcError. */
export function compileSelector(req: WatchRequest__Output, sysfs = '/sys'): Selector {
  const outcomes = new Set<NativeOutcome>();
  (req.outcomes ?? []).forEach((o, i) => {
    const n = outcomeFromWire(o);
    if (!n) throw invalid(`outcomes[${i}]: unknown outcome ${JSON.stringify(o)} (OUTCOME_FAILED, OUTCOME_WOULD_FAIL, OUTCOME_SPARED)`);
    outcomes.add(n);
  });
  const id = req.filterId ?? 0;
  const dev: DeviceInfo | null = req.device ? resolveDevice(req.device, sysfs) : null;
  const onDevice = (e: KernelEvent): boolean => {
    if (!dev || same(e.dev, dev)) return true;
    if (!same(e.disk, dev.disk)) return false;
    if (!dev.partition) return true; // a disk shows its partitions' I/O
    // a partition also shows I/O sent through its disk to the partition's sectors
    if (e.nrSectors === 0) return false;
    const last = e.sector + BigInt(e.nrSectors) - 1n;
    return e.sector <= dev.start + dev.size - 1n && last >= dev.start;
  };
  return {
    event: (e) => (!id || e.filterId === id) && (!outcomes.size || outcomes.has(e.outcome)) && onDevice(e),
    filter: (f) => {
      if (id && f.id !== id) return false;
      if (!dev) return true;
      // filters on the device itself, or (for a disk) on its partitions, or (for a partition) on its disk
      return same(f.device, dev) || (!dev.partition && same(f.disk, dev)) || (dev.partition && same(f.device, dev.disk));
    },
  };
}

/** DeviceRefs by device number, resolved through sysfs at most once per `ttlMs` (numbers get reused). */
export class DeviceNames {
  private readonly cache = new Map<string, { ref: DeviceRef; disk: Device; at: number }>();
  constructor(
    private readonly sysfs = '/sys',
    private readonly ttlMs = 5000,
    private readonly max = 4096,
  ) {}

  private get(d: Device): { ref: DeviceRef; disk: Device; at: number } {
    const key = `${d.major}:${d.minor}`;
    const now = Date.now();
    const hit = this.cache.get(key);
    if (hit && now - hit.at < this.ttlMs) return hit;
    let entry;
    try {
      const i = resolveDevice(key, this.sysfs);
      const ref = { major: i.major, minor: i.minor, name: i.name, diskName: i.disk.name, partition: i.partition, sizeSectors: String(i.size), startSector: String(i.start) };
      entry = { ref, disk: { major: i.disk.major, minor: i.disk.minor }, at: now };
    } catch {
      entry = { ref: { major: d.major, minor: d.minor }, disk: d, at: now }; // gone already (e.g. a detached loop device)
    }
    if (this.cache.size >= this.max) this.cache.clear();
    this.cache.set(key, entry);
    return entry;
  }
  ref(d: Device): DeviceRef {
    return this.get(d).ref;
  }
  /** The whole disk holding `d` (d itself for a disk or a device that is gone). */
  disk(d: Device): Device {
    return this.get(d).disk;
  }
}

export function toIoEvent(e: KernelEvent, names: DeviceNames): IoEvent {
  return {
    timeUnixNs: String(e.timeUnixNs),
    device: names.ref(e.dev),
    disk: names.ref(e.disk),
    sector: String(e.sector),
    deviceSector: String(e.devSector),
    nrSectors: e.nrSectors,
    ops: e.ops.map(opToWire),
    filterId: e.filterId,
    rangeIndex: e.rangeIndex,
    outcome: outcomeToWire(e.outcome),
    pid: e.pid,
    comm: e.comm,
    cgroupId: String(e.cgroupId),
  };
}

/** The Watch handler: one watcher for the life of the call. */
/** `onDemand`: the program is attached at the first SetFilter, so a stream may start before it. */
export function serveWatch(hub: EventHub, call: grpc.ServerWritableStream<WatchRequest__Output, WatchEvent>, sysfs = '/sys', onDemand = false): void {
  const fail = (e: unknown) => {
    const err = e instanceof RpcError ? e : new RpcError(grpc.status.INTERNAL, (e as Error)?.message ?? String(e));
    call.emit('error', err);
  };
  let watcher;
  try {
    const selector = compileSelector(call.request, sysfs);
    if (hub.state === 'detached' && !onDemand) throw precondition('not attached: call Attach first (a Watch stream then survives Detach and a new Attach)');
    if (hub.state === 'no-events') throw new RpcError(grpc.status.UNIMPLEMENTED, hub.unavailable);
    watcher = hub.subscribe(selector, {
      write: (m) => call.write(m),
      onDrain: (fn) => call.once('drain', fn),
      close: () => call.emit('error', new RpcError(grpc.status.UNAVAILABLE, 'the agent is shutting down')),
    });
  } catch (e) {
    fail(e);
    return;
  }
  const w = watcher;
  const done = () => hub.unsubscribe(w);
  call.on('cancelled', done);
  call.on('close', done);
  call.on('finish', done);
  // headers now: the client knows the watch is accepted before any event happens
  call.sendMetadata(new grpc.Metadata());
}

/** THE call site of the native event API: the ring-buffer reader of this handle as an EventSource. */
export function nativeEventSource(f: native.Filterer): EventSource {
  return (onEvents) => {
    f.startEvents(onEvents);
    return () => f.stopEvents();
  };
}

/** Kernel loss counters as Status reports them (filters[].events_dropped, events_lost). */
export async function statusDrops(core: IoFilterCore, names: DeviceNames): Promise<KernelDrops> {
  const st = await core.status();
  return {
    ringFull: BigInt(String(st.eventsLost ?? 0)),
    filters: (st.filters ?? []).map((f) => {
      const device = { major: f.device?.major ?? 0, minor: f.device?.minor ?? 0 };
      return { id: f.id ?? 0, device, disk: names.disk(device), dropped: BigInt(String(f.eventsDropped ?? 0)) };
    }),
  };
}
