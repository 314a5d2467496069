// The event hub behind Watch: takes batches of kernel events from one source (the
// native ring-buffer reader while attached), fans them out to every watcher through a
// bounded queue each, and tells a watcher how many events it lost and why: its own
// slowness, the kernel's per-filter rate limit, or a full ring buffer. Transport-free:
// agent/watch.ts adapts it to the gRPC stream.
import type { IoEvent } from '../proto/gen/iofilter/v1/IoEvent';
import type { WatchEvent } from '../proto/gen/iofilter/v1/WatchEvent';
import type { Device, KernelEvent } from '../native';
import { exhausted } from './errors';

/** One matched I/O as the native binding reports it. */
export type { KernelEvent } from '../native';

/** Starts delivering kernel events in batches; returns the function that stops it. */
export type EventSource = (onEvents: (batch: KernelEvent[]) => void) => () => void;

/** What one watcher asked to see (compiled from a WatchRequest by agent/watch.ts). */
export interface Selector {
  event(e: KernelEvent): boolean;
  /** Whether losses counted against this filter concern the watcher. */
  filter(f: { id: number; device: Device; disk: Device }): boolean;
}

/** The watcher's end of the stream: write() false means "stop until onDrain". */
export interface Sink {
  write(msg: WatchEvent): boolean;
  onDrain(fn: () => void): void;
  /** The agent is stopping: end the stream. */
  close(): void;
}

/** Kernel-side losses as counters (Status: events_lost, filters[].events_dropped). */
export interface KernelDrops {
  ringFull: bigint;
  filters: { id: number; device: Device; disk: Device; dropped: bigint }[];
}

export const LOST_SLOW = 'slow client';
export const LOST_RATE = 'kernel rate limit';
export const LOST_RING = 'ring buffer full';

export interface HubOptions {
  /** Events queued per watcher at most; past that its newest events are dropped and counted. */
  queueEvents: number;
  maxWatchers: number;
  toWire(e: KernelEvent): IoEvent;
  /** Reads the kernel's loss counters; polled while someone watches. */
  drops?: () => Promise<KernelDrops>;
  dropPollMs?: number;
  onError?: (what: string, e: unknown) => void;
}

type Entry = { io: IoEvent } | { lost: { count: bigint; reason: string } };

/** A FIFO with O(1) shift: the per-watcher queue. */
class Fifo<T> {
  private items: T[] = [];
  private head = 0;
  get length() {
    return this.items.length - this.head;
  }
  push(x: T) {
    this.items.push(x);
  }
  /** The k-th entry from the end (0: the last). */
  fromEnd(k: number): T | undefined {
    return k < this.length ? this.items[this.items.length - 1 - k] : undefined;
  }
  shift(): T | undefined {
    if (!this.length) return undefined;
    const x = this.items[this.head++];
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return x;
  }
}

export class Watcher {
  private readonly queue = new Fifo<Entry>();
  private queuedEvents = 0;
  private blocked = false;
  /** Events written to the stream / lost because this watcher was too slow. */
  sent = 0;
  lostSlow = 0n;

  constructor(
    readonly selector: Selector,
    private readonly sink: Sink,
    private readonly limit: number,
  ) {}

  get queued(): number {
    return this.queuedEvents;
  }
  /** Queue entries: events plus loss markers. */
  get backlog(): number {
    return this.queue.length;
  }
  /** True while the stream has refused more (waiting for 'drain'). */
  get stalled(): boolean {
    return this.blocked;
  }

  /** Queues the event and writes what the stream takes now, so a batch larger than the bound is no loss. */
  offer(io: IoEvent): void {
    if (this.queuedEvents < this.limit) {
      this.queue.push({ io });
      this.queuedEvents++;
      if (!this.blocked) this.flush();
    } else {
      this.lostSlow++;
      this.lose(1n, LOST_SLOW);
    }
  }

  /**
   * Records a loss where it happened in the stream: after what is already queued. Losses
   * with no event between them share one marker per reason, so markers stay bounded too
   * (at most 3 per gap between queued events).
   */
  lose(count: bigint, reason: string): void {
    for (let k = 0, e; (e = this.queue.fromEnd(k)) && 'lost' in e; k++) {
      if (e.lost.reason === reason) {
        e.lost.count += count;
        return;
      }
    }
    this.queue.push({ lost: { count, reason } });
  }

  flush(): void {
    while (!this.blocked && this.queue.length) {
      const e = this.queue.shift()!;
      let msg: WatchEvent;
      if ('io' in e) {
        this.queuedEvents--;
        this.sent++;
        msg = e;
      } else {
        msg = { lost: { count: String(e.lost.count), reason: e.lost.reason } };
      }
      if (!this.sink.write(msg)) {
        this.blocked = true;
        this.sink.onDrain(() => {
          this.blocked = false;
          this.flush();
        });
      }
    }
  }

  close(): void {
    this.sink.close();
  }
}

export type HubState = 'detached' | 'attached' | 'no-events';

export class EventHub {
  private readonly watchers = new Set<Watcher>();
  private stopSource: (() => void) | null = null;
  private attachedState: HubState = 'detached';
  private pollTimer?: NodeJS.Timeout;
  private polling = false;
  private baseline: { ringFull: bigint; filters: Map<number, bigint> } | null = null;
  /** Kernel events received since start, and slow-watcher losses of watchers gone. */
  received = 0;
  private lostSlowGone = 0n;

  constructor(private readonly opts: HubOptions) {}

  get state(): HubState {
    return this.attachedState;
  }

  /** Why events are not available while attached ('no-events'). */
  unavailable = '';

  /** The program is attached; `source` delivers its events (null: this build cannot). Never throws. */
  attach(source: EventSource | null): void {
    this.detach();
    this.attachedState = 'no-events';
    this.unavailable = "this agent's native binding does not deliver kernel events";
    if (!source) return;
    try {
      this.stopSource = source((batch) => this.push(batch));
      this.attachedState = 'attached';
      this.unavailable = '';
    } catch (e) {
      // attaching must not fail because of events; Watch says why they are missing
      this.unavailable = `kernel events cannot be read: ${(e as Error)?.message ?? String(e)}`;
      this.opts.onError?.('starting the event source', e);
    }
  }

  /** The program is gone. Watchers stay subscribed and see events again after a new attach. */
  detach(): void {
    const stop = this.stopSource;
    this.stopSource = null;
    this.attachedState = 'detached';
    if (stop) {
      try {
        stop();
      } catch (e) {
        this.opts.onError?.('stopping the event source', e);
      }
    }
  }

  subscribe(selector: Selector, sink: Sink): Watcher {
    if (this.watchers.size >= this.opts.maxWatchers)
      throw exhausted(`too many watchers: this agent serves at most ${this.opts.maxWatchers} Watch streams at once`);
    const w = new Watcher(selector, sink, this.opts.queueEvents);
    this.watchers.add(w);
    if (this.watchers.size === 1 && this.opts.drops) {
      void this.poll(); // the baseline: losses before anyone watched are nobody's
      this.pollTimer = setInterval(() => void this.poll(), this.opts.dropPollMs ?? 1000);
      this.pollTimer.unref();
    }
    return w;
  }

  unsubscribe(w: Watcher): void {
    if (!this.watchers.delete(w)) return;
    this.lostSlowGone += w.lostSlow;
    if (!this.watchers.size) {
      clearInterval(this.pollTimer);
      this.pollTimer = undefined;
      this.baseline = null;
    }
  }

  /** One batch from the source: each event converted once, offered to every watcher that wants it. */
  push(batch: KernelEvent[]): void {
    this.received += batch.length;
    if (!this.watchers.size) return;
    for (const e of batch) {
      let io: IoEvent | undefined;
      for (const w of this.watchers) {
        if (!w.selector.event(e)) continue;
        io ??= this.opts.toWire(e);
        w.offer(io);
      }
    }
  }

  /** Turns growth of the kernel's loss counters into Lost messages for the watchers concerned. */
  async poll(): Promise<void> {
    if (this.polling || !this.opts.drops) return;
    this.polling = true;
    try {
      const d = await this.opts.drops();
      if (!this.watchers.size) return;
      const prev = this.baseline;
      this.baseline = { ringFull: d.ringFull, filters: new Map(d.filters.map((f) => [f.id, f.dropped])) };
      if (!prev) return;
      // a counter that went down was reset (filter replaced): all of it is new
      const delta = (now: bigint, before = 0n) => (now >= before ? now - before : now);
      const ring = delta(d.ringFull, prev.ringFull);
      for (const w of this.watchers) {
        if (ring) w.lose(ring, LOST_RING);
        let rated = 0n;
        for (const f of d.filters) if (w.selector.filter(f)) rated += delta(f.dropped, prev.filters.get(f.id));
        if (rated) w.lose(rated, LOST_RATE);
        w.flush();
      }
    } catch (e) {
      this.opts.onError?.('reading kernel loss counters', e);
    } finally {
      this.polling = false;
    }
  }

  /** queued: events queued over all watchers; largestQueue: the longest one watcher has. */
  stats(): { watchers: number; queued: number; largestQueue: number; lostSlow: bigint; received: number } {
    let queued = 0;
    let largestQueue = 0;
    let lostSlow = this.lostSlowGone;
    for (const w of this.watchers) {
      queued += w.queued;
      largestQueue = Math.max(largestQueue, w.queued);
      lostSlow += w.lostSlow;
    }
    return { watchers: this.watchers.size, queued, largestQueue, lostSlow, received: this.received };
  }

  /** Agent shutdown: stop the source and end every stream. */
  close(): void {
    this.detach();
    for (const w of [...this.watchers]) {
      this.unsubscribe(w);
      w.close();
    }
  }
}
