// The IoFilterService behaviour, independent of transport: attach state, validation,
// device resolution, protected devices, TTL policy, and the one mutation queue that
// makes concurrent Set/Delete calls land in the order they are acknowledged.
import * as os from 'node:os';
import * as native from '../native';
import type { AttachRequest__Output } from '../proto/gen/iofilter/v1/AttachRequest';
import type { AttachState } from '../proto/gen/iofilter/v1/AttachState';
import type { DeleteFilterResponse } from '../proto/gen/iofilter/v1/DeleteFilterResponse';
import type { DetachResponse } from '../proto/gen/iofilter/v1/DetachResponse';
import type { DeviceRef } from '../proto/gen/iofilter/v1/DeviceRef';
import type { Filter } from '../proto/gen/iofilter/v1/Filter';
import type { SetFilterRequest__Output } from '../proto/gen/iofilter/v1/SetFilterRequest';
import type { StatusResponse } from '../proto/gen/iofilter/v1/StatusResponse';
import type { AgentConfig } from './config';
import { DeviceInfo, parseDevNumbers, resolveDevice } from './devices';
import { fromNative, invalid, precondition } from './errors';
import type { Logger } from './log';
import { checkProtected, Extent, protectedExtents } from './protect';
import { modeFromWire, modeToWire, opToWire } from '../proto/names';
import { toFilterSpec } from './validate';
import { version } from './version';

/** The kernel-facing API the service needs; tests may substitute an in-memory one. */
export interface KernelApi {
  probe(): Promise<native.Capabilities>;
  attach(opts: native.AttachOptions): Promise<native.Filterer>;
  adopt(pinDir: string): Promise<native.Filterer | null>;
  limits(): native.Limits;
}

export class IoFilterCore {
  private handle: native.Filterer | null = null;
  private readonly filtererListeners: ((f: native.Filterer | null) => void)[] = [];
  private caps: native.Capabilities | null = null;
  private attachError = '';
  private queue: Promise<unknown> = Promise.resolve();
  private reaper?: NodeJS.Timeout;
  private readonly startedAt = Date.now();
  private extents: Extent[] = [];

  constructor(
    private readonly cfg: AgentConfig,
    private readonly log: Logger,
    private readonly kernel: KernelApi = native,
    /** Files whose filesystem must stay writable (the agent itself, its logs). */
    private readonly ownFiles: string[] = [],
    /** Where block devices are looked up (tests point it at a fake tree). */
    private readonly sysfs = '/sys',
  ) {}

  // Every change of the attached handle is told to the listeners (Watch follows it).
  private get filterer(): native.Filterer | null {
    return this.handle;
  }
  private set filterer(f: native.Filterer | null) {
    if (f === this.handle) return;
    this.handle = f;
    for (const fn of this.filtererListeners) fn(f);
  }
  /** Calls `fn` now with the current handle (null: not attached) and after every change. */
  onFilterer(fn: (f: native.Filterer | null) => void): void {
    this.filtererListeners.push(fn);
    fn(this.handle);
  }

  /** Probes, then adopts existing pins or attaches as configured. Never throws for a kernel that lacks a mode. */
  async start(): Promise<void> {
    this.extents = protectedExtents(this.ownFiles, this.cfg.protect.allow);
    for (const x of this.extents) this.log.info({ device: x.device, reason: x.reason }, 'protected device');
    this.caps = await this.kernel.probe();
    for (const m of this.caps.modes)
      this.log.info({ mode: m.mode, available: m.available, hook: m.hook, reason: m.reason || undefined }, 'capability');
    const adopted = await this.kernel.adopt(this.cfg.pinDir).catch((e) => {
      this.attachError = `cannot adopt pins in ${this.cfg.pinDir}: ${e.message}`;
      this.log.error({ err: e.message }, 'adopting pins failed');
      return null;
    });
    if (adopted) {
      this.filterer = adopted;
      this.log.info({ mode: adopted.state.mode, pinDir: this.cfg.pinDir, filters: adopted.listFilters().length }, 'adopted pinned program and filters');
    } else if (this.cfg.attach !== 'none' && !this.attachError) {
      try {
        this.filterer = await this.kernel.attach({ mode: this.cfg.attach, pinDir: this.cfg.pinDir, maxDisks: this.cfg.maxDisks });
        this.log.info({ mode: this.filterer.state.mode, hook: this.filterer.state.hook }, 'attached');
      } catch (e) {
        this.attachError = (e as Error).message;
        this.log.warn({ err: this.attachError }, `not attached: attach mode ${this.cfg.attach} failed; serving unattached (Attach can retry)`);
      }
    }
    this.reaper = setInterval(() => this.reap(), 1000);
    this.reaper.unref();
  }

  /** Closes handles; pinned filters stay in force. Returns how many there were. */
  close(): number {
    clearInterval(this.reaper);
    const n = this.filterer?.listFilters().length ?? 0;
    this.filterer?.close();
    this.filterer = null;
    return n;
  }

  private serial<T>(fn: () => Promise<T> | T): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private reap(): void {
    void this.serial(() => {
      const n = this.filterer?.reapExpired() ?? 0;
      if (n) this.log.info({ removed: n }, 'removed expired filters (the kernel had already stopped enforcing them)');
    }).catch((e) => this.log.error({ err: e.message }, 'reaping expired filters failed'));
  }

  private attached(): native.Filterer {
    if (!this.filterer)
      throw precondition(`not attached${this.attachError ? ` (${this.attachError})` : ''}: call Attach first`);
    return this.filterer;
  }

  private state(): AttachState {
    const s = this.filterer?.state;
    if (!s) return { attached: false, mode: 'MODE_UNSPECIFIED', pinDir: this.cfg.pinDir };
    return {
      attached: true,
      mode: modeToWire(s.mode),
      pinDir: s.pinDir,
      hook: s.hook,
      progIds: s.progIds,
      linkIds: s.linkIds,
      adopted: s.adopted,
      maxDisks: s.maxDisks,
    };
  }

  attach(req: AttachRequest__Output): Promise<AttachState> {
    const mode = modeFromWire(req.mode);
    if (!mode) return Promise.reject(invalid(`mode: unknown value ${JSON.stringify(req.mode)} (MODE_AUTO, MODE_FMOD_RET, MODE_KPROBE, MODE_OBSERVE)`));
    return this.serial(async () => {
      if (this.filterer) return this.state(); // idempotent
      const cap = this.caps?.modes.find((m) => m.mode === mode);
      if (cap && !cap.available) throw precondition(`mode ${mode} is not available on this kernel: ${cap.reason}`);
      try {
        this.filterer = await this.kernel.attach({ mode, pinDir: this.cfg.pinDir, maxDisks: this.cfg.maxDisks });
      } catch (e) {
        throw fromNative(e, `attach ${mode}`);
      }
      this.attachError = '';
      this.log.info({ mode: this.filterer.state.mode, hook: this.filterer.state.hook, adopted: this.filterer.state.adopted }, 'attached');
      return this.state();
    });
  }

  detach(): Promise<DetachResponse> {
    return this.serial(async () => {
      if (!this.filterer) return { wasAttached: false, filtersRemoved: 0 };
      const n = this.filterer.listFilters().length;
      const f = this.filterer;
      this.filterer = null;
      try {
        await f.detach();
      } catch (e) {
        throw fromNative(e, 'detach');
      }
      this.log.info({ filtersRemoved: n }, 'detached: program unpinned, all filters gone');
      return { wasAttached: true, filtersRemoved: n };
    });
  }

  setFilter(req: SetFilterRequest__Output): Promise<Filter> {
    return this.serial(() => {
      const f = this.attached();
      const dev = resolveDevice(req.device, this.sysfs);
      const spec = toFilterSpec(req, dev, { maxRanges: this.kernel.limits().maxRanges, ttl: this.cfg.ttl });
      checkProtected(spec, dev, this.extents);
      let info: native.FilterInfo;
      try {
        info = f.putFilter(spec);
      } catch (e) {
        throw fromNative(e, `SetFilter ${req.device}`);
      }
      return this.toFilter(info, dev);
    });
  }

  deleteFilter(device: string): Promise<DeleteFilterResponse> {
    return this.serial(() => {
      const f = this.attached();
      // a filter on a device that has since disappeared can still be deleted by number
      let dev: DeviceInfo | null = null;
      let nums: { major: number; minor: number };
      try {
        dev = resolveDevice(device, this.sysfs);
        nums = dev;
      } catch (e) {
        if (device.startsWith('/')) throw e;
        nums = parseDevNumbers(device);
      }
      const existed = f.deleteFilter({ major: nums.major, minor: nums.minor });
      return { existed, device: dev ? this.ref(dev) : { major: nums.major, minor: nums.minor } };
    });
  }

  async status(): Promise<StatusResponse> {
    const filters = this.filterer ? this.filterer.listFilters().map((f) => this.toFilter(f)) : [];
    const caps = this.caps;
    return {
      kernelRelease: caps?.kernelRelease ?? os.release(),
      btf: caps?.btf ?? false,
      lockdown: caps?.lockdown ?? 'unknown',
      capabilities: (caps?.modes ?? []).map((m) => ({ mode: modeToWire(m.mode), available: m.available, hook: m.hook, reason: m.reason })),
      state: this.state(),
      filters,
      agentVersion: version,
      uptimeMs: String(Date.now() - this.startedAt),
      hostname: os.hostname(),
      limits: {
        maxRangesPerDisk: this.kernel.limits().maxRanges,
        maxFiltersPerDisk: this.kernel.limits().maxFilters,
        maxTtlMs: String(this.cfg.ttl.maxMs),
        defaultTtlMs: String(this.cfg.ttl.defaultMs),
        allowNoTtl: this.cfg.ttl.allowNoTtl,
      },
      attachError: this.filterer ? '' : this.attachError,
    };
  }

  private ref(d: DeviceInfo): DeviceRef {
    return {
      major: d.major,
      minor: d.minor,
      name: d.name,
      diskName: d.disk.name,
      partition: d.partition,
      sizeSectors: String(d.size),
      startSector: String(d.start),
    };
  }

  private toFilter(f: native.FilterInfo, dev?: DeviceInfo): Filter {
    let ref: DeviceRef;
    try {
      ref = this.ref(dev ?? resolveDevice(`${f.device.major}:${f.device.minor}`, this.sysfs));
    } catch {
      // the device went away (e.g. a detached loop device); the filter is still there
      ref = { major: f.device.major, minor: f.device.minor, sizeSectors: String(f.size), startSector: String(f.offset) };
    }
    return {
      device: ref,
      wholeDevice: f.whole,
      ranges: f.ranges.map((r) => ({
        start: String(r.start),
        end: String(r.end),
        ops: r.ops.map(opToWire),
        matched: String(r.matched),
        failed: String(r.failed),
      })),
      hasExpiry: f.remainingMs !== null,
      remainingMs: String(f.remainingMs ?? 0),
      probability: f.probability,
      maxFailures: String(f.maxFailures),
      failures: String(f.failures),
    };
  }
}
