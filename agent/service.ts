// The IoFilterService behaviour, independent of transport: attach state, validation,
// device resolution, protected devices, TTL policy, and the one mutation queue that
// makes concurrent Set/Delete calls land in the order they are acknowledged.
import * as os from 'node:os';
import * as native from '../native';
import type { AttachRequest__Output } from '../proto/gen/iofilter/v1/AttachRequest';
import type { AttachState } from '../proto/gen/iofilter/v1/AttachState';
import type { DeleteFilterRequest__Output } from '../proto/gen/iofilter/v1/DeleteFilterRequest';
import type { ClearFiltersResponse } from '../proto/gen/iofilter/v1/ClearFiltersResponse';
import type { DeleteFilterResponse } from '../proto/gen/iofilter/v1/DeleteFilterResponse';
import type { DetachResponse } from '../proto/gen/iofilter/v1/DetachResponse';
import type { DeviceRef } from '../proto/gen/iofilter/v1/DeviceRef';
import type { Filter } from '../proto/gen/iofilter/v1/Filter';
import type { SetFilterRequest__Output } from '../proto/gen/iofilter/v1/SetFilterRequest';
import type { SetFilterResponse } from '../proto/gen/iofilter/v1/SetFilterResponse';
import type { StatusResponse } from '../proto/gen/iofilter/v1/StatusResponse';
import type { WrapResponse } from '../proto/gen/iofilter/v1/WrapResponse';
import type { UnwrapResponse } from '../proto/gen/iofilter/v1/UnwrapResponse';
import { Backends, BackendDeps, BpfView } from './backends';
import { CgroupResolver } from './cgroup';
import type { AgentConfig } from './config';
import { DeviceInfo, parseDevNumbers, resolveDevice } from './devices';
import { Media } from './identity';
import { fromNative, invalid, precondition } from './errors';
import { asRangedRequest, requestedFile, resolveFile } from './files';
import type { Logger } from './log';
import { checkProtected, Extent, protectedExtents } from './protect';
import { modeFromWire } from '../proto/names';
import { EIO, faultFromWire, faultToWire } from './faults';
import { deleteTarget, refuseIfScoped, scopeQuery, toFilterSpec } from './validate';
import { version } from '../common/version';
import { idleBpfCapability, notAttachedWhy, policyOf } from './ondemand';
import { attachState, capabilityOf, deviceRef, filterOf, limitsOf, View, viewOf, withView } from './wire';

/** The kernel-facing API the service needs; tests may substitute an in-memory one. */
export interface KernelApi {
  probe(): Promise<native.Capabilities>;
  lock(pinDir: string): native.PinDirLock;
  attach(opts: native.AttachOptions): Promise<native.Filterer>;
  adopt(lock: native.PinDirLock): Promise<native.Filterer | null>;
  limits(): native.Limits;
  fileExtents(path: string, maxExtents: number): Promise<native.FileExtents>;
}

export class IoFilterCore {
  private handle: native.Filterer | null = null;
  private readonly filtererListeners: ((f: native.Filterer | null) => void)[] = [];
  private caps: native.Capabilities | null = null;
  private attachError = '';
  private queue: Promise<unknown> = Promise.resolve();
  private reaper?: NodeJS.Timeout;
  /** An on-demand detach in progress (outside any caller's RPC when the reaper started it). */
  private detaching: Promise<void> | null = null;
  private readonly startedAt = Date.now();
  private extents: Extent[] = [];
  private pinLock: native.PinDirLock | null = null;
  private media!: Media;
  /** Backends beside bpf (dm); see the "Backends" methods at the end. */
  readonly backends: Backends;

  constructor(
    private readonly cfg: AgentConfig,
    private readonly log: Logger,
    private readonly kernel: KernelApi = native,
    /** Files whose filesystem must stay writable (the agent itself, its logs). */
    private readonly ownFiles: string[] = [],
    /** Where block devices are looked up (tests point it at a fake tree). */
    private readonly sysfs = '/sys',
    /** Where cgroup scopes are resolved (tests point it at a fake tree). */
    private readonly cgroups = new CgroupResolver(),
    backendDeps?: Partial<BackendDeps>,
  ) {
    this.backends = new Backends(cfg, log, { sysfs, cgroups, bpf: () => this.handle, ...backendDeps });
    this.media = new Media(sysfs);
  }

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
    // one agent per pin dir, for as long as it runs: taken first, so a second agent
    // exits at once (EBUSY names the pin dir and the holder's pid)
    this.pinLock = this.kernel.lock(this.cfg.pinDir);
    this.protectedNow();
    this.caps = await this.kernel.probe();
    for (const m of this.caps.modes)
      this.log.info({ mode: m.mode, available: m.available, hook: m.hook, reason: m.reason || undefined }, 'capability');
    const adopted = await this.kernel.adopt(this.pinLock).catch((e) => {
      this.attachError = `cannot adopt pins in ${this.cfg.pinDir}: ${e.message}`;
      this.log.error({ err: e.message }, 'adopting pins failed');
      return null;
    });
    if (adopted) {
      this.filterer = adopted;
      this.log.info({ mode: adopted.state.mode, pinDir: this.cfg.pinDir, filters: adopted.listFilters().length }, 'adopted pinned program and filters');
      await this.settle(); // on demand: pins an earlier agent left without a filter are detached
    } else if (this.cfg.attachOnDemand) {
      this.log.info({ mode: this.cfg.attach }, 'attach on demand: the program is attached at the first SetFilter');
    } else if (this.cfg.attach !== 'none' && !this.attachError) {
      try {
        this.filterer = await this.kernel.attach({ mode: this.cfg.attach, lock: this.pinLock, maxDisks: this.cfg.maxDisks });
        this.log.info({ mode: this.filterer.state.mode, hook: this.filterer.state.hook }, 'attached');
      } catch (e) {
        this.attachError = (e as Error).message;
        this.noteAttachFailure(e);
        this.log.warn({ err: this.attachError }, `not attached: attach mode ${this.cfg.attach} failed; serving unattached (Attach can retry)`);
      }
    }
    await this.backends.start(); // restores dm faults that expired while no agent ran, before serving
    // expired filters out first: a dm filter's counter that outlived it while no agent ran is one
    const expired = this.filterer?.reapExpired() ?? 0;
    if (expired) this.log.info({ removed: expired }, 'removed expired filters (the kernel had already stopped enforcing them)');
    this.backends.companions.reconcile();
    this.reaper = setInterval(() => this.reap(), 1000);
    this.reaper.unref();
  }

  /** Closes handles; pinned filters stay in force. Returns how many there were. */
  close(): number {
    clearInterval(this.reaper);
    const n = this.filterer?.listFilters().length ?? 0;
    this.filterer?.close();
    this.filterer = null;
    this.pinLock?.release();
    this.pinLock = null;
    this.backends.close();
    return n + this.backends.list().length;
  }

  private serial<T>(fn: () => Promise<T> | T): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private reap(): void {
    void this.serial(async () => {
      this.backends.companions.snapshot(); // a dm filter keeps its final counts until restored
      const n = this.filterer?.reapExpired() ?? 0;
      if (n) this.log.info({ removed: n }, 'removed expired filters (the kernel had already stopped enforcing them)');
      this.reapMoved();
      await this.settle();
      return this.backends.restoreExpired();
    }).catch((e) => this.log.error({ err: e.message }, 'reaping expired filters failed'));
  }

  /** On demand, before a bpf SetFilter: attach (with the self-test) if not attached. In the queue. */
  private async attachOnDemand(): Promise<void> {
    if (!this.cfg.attachOnDemand || this.filterer || !this.pinLock || this.cfg.attach === 'none') return;
    const t0 = performance.now();
    try {
      this.filterer = await this.kernel.attach({ mode: this.cfg.attach, lock: this.pinLock, maxDisks: this.cfg.maxDisks });
    } catch (e) {
      this.attachError = (e as Error).message;
      this.noteAttachFailure(e);
      this.log.warn({ err: this.attachError }, `attach on demand (${this.cfg.attach}) failed`);
      return; // the bpf backend is then unavailable, with this reason
    }
    this.attachError = '';
    this.log.info({ mode: this.filterer.state.mode, hook: this.filterer.state.hook, ms: +(performance.now() - t0).toFixed(1) }, 'attached on demand');
  }

  /** On demand: no filter left (deleted, cleared, expired, or a SetFilter that did not stay): detach. In the queue. */
  private async settle(): Promise<void> {
    const f = this.filterer;
    if (!this.cfg.attachOnDemand || !f || f.listFilters().length) return;
    this.filterer = null;
    const done = f.detach();
    this.detaching = done.then(() => undefined, () => undefined);
    try {
      await done;
    } catch (e) {
      throw fromNative(e, 'detach on demand');
    } finally {
      this.detaching = null;
    }
    this.log.info({}, 'detached on demand: no filter left');
  }

  /** Filters whose disk has another medium now (agent/identity.ts): removed, and logged. */
  private reapMoved(): void {
    const f = this.filterer;
    if (!f) return;
    for (const { filter, was, now } of this.media.moved(f.listFilters())) {
      f.deleteFilter({ id: filter.id });
      this.log.warn(
        { filterId: filter.id, device: `${filter.device.major}:${filter.device.minor}`, medium: was, now: now ?? 'gone' },
        now === null ? 'removed a filter whose disk is gone' : 'removed a filter whose disk has a new medium (the kernel no longer matched it)',
      );
    }
  }

  /** A mode that failed to attach (a dead hook found by the self-test, say) is unavailable, with that reason. */
  private noteAttachFailure(e: unknown): void {
    const reasons = (e as { reasons?: Record<string, string> }).reasons ?? {};
    for (const m of this.caps?.modes ?? [])
      if (reasons[m.mode]) Object.assign(m, { available: false, reason: reasons[m.mode] });
  }

  private attached(): native.Filterer {
    if (!this.filterer) throw precondition(notAttachedWhy(this.cfg, this.attachError));
    return this.filterer;
  }

  private state(): AttachState {
    return { ...attachState(this.filterer, this.cfg.pinDir), policy: policyOf(this.cfg) };
  }

  attach(req: AttachRequest__Output): Promise<AttachState> {
    const mode = modeFromWire(req.mode);
    if (!mode) return Promise.reject(invalid(`mode: unknown value ${JSON.stringify(req.mode)} (MODE_AUTO, MODE_FMOD_RET, MODE_KPROBE, MODE_OBSERVE)`));
    return this.serial(async () => {
      if (this.filterer) return this.state(); // idempotent
      const cap = this.caps?.modes.find((m) => m.mode === mode);
      if (cap && !cap.available) throw precondition(`mode ${mode} is not available on this kernel: ${cap.reason}`);
      try {
        if (!this.pinLock) throw precondition('the agent is stopping');
        this.filterer = await this.kernel.attach({ mode, lock: this.pinLock, maxDisks: this.cfg.maxDisks });
      } catch (e) {
        this.noteAttachFailure(e);
        throw fromNative(e, `attach ${mode}`);
      }
      this.attachError = '';
      this.backends.companions.reconcile();
      this.log.info({ mode: this.filterer.state.mode, hook: this.filterer.state.hook, adopted: this.filterer.state.adopted }, 'attached');
      return this.state();
    });
  }

  detach(): Promise<DetachResponse> {
    return this.serial(async () => {
      const dm = await this.backends.clear();
      if (!this.filterer) return { wasAttached: false, filtersRemoved: dm };
      const n = this.filterer.listFilters().length;
      const f = this.filterer;
      this.filterer = null;
      try {
        await f.detach();
      } catch (e) {
        throw fromNative(e, 'detach');
      }
      this.log.info({ filtersRemoved: n }, 'detached: program unpinned, all filters gone');
      return { wasAttached: true, filtersRemoved: n + dm };
    });
  }

  /**
   * The protected extents as the host is now: read at every SetFilter (about 0.2 ms), so
   * /boot or swap enabled, a state dir mounted, or a dm stack re-layered after the agent
   * started is protected too. Each change is logged.
   */
  private protectedNow(): Extent[] {
    const now = protectedExtents(this.ownFiles, this.cfg.protect.allow);
    const key = (x: Extent) => `${x.device} ${x.reason}`;
    const before = new Set(this.extents.map(key));
    for (const x of now) if (!before.has(key(x))) this.log.info({ device: x.device, reason: x.reason }, 'protected device');
    this.extents = now;
    return now;
  }

  async setFilter(req: SetFilterRequest__Output): Promise<SetFilterResponse> {
    const view = viewOf(req.view, 'BASIC'); // the answer need not echo what was sent (issue 25)
    // a file (set --file) is resolved to its device and extents before the queue: FIEMAP may wait for writeback
    const file = requestedFile(req);
    const fromFile = file ? await resolveFile(file, { fileExtents: (p, max) => this.kernel.fileExtents(p, max), maxRanges: this.kernel.limits().maxRangesPerFilter, sysfs: this.sysfs }) : null;
    return this.serial(async () => {
      const dev = fromFile?.dev ?? resolveDevice(req.device, this.sysfs);
      const { cgroup, warnings } = this.scope(req);
      const fault = faultFromWire(req.fault);
      const spec = toFilterSpec(fromFile ? asRangedRequest(req, fromFile.ranges) : req, dev, { maxRanges: this.kernel.limits().maxRanges, ttl: this.cfg.ttl }, cgroup, fault);
      if (file) spec.meta = { ...spec.meta, file };
      checkProtected(spec, dev, this.protectedNow());
      // after validation (bad input attaches nothing), and only for what bpf may serve: EIO
      const bpfMay = !['BACKEND_DM', 'BACKEND_BLKINJECT', 'BACKEND_THROTTLE'].includes(String(req.backend)) && fault.kind === 'error' && fault.status.tag === 'IOERR';
      if (bpfMay) await this.attachOnDemand();
      try {
        const backend = await this.backends.choose(req.backend, spec, dev, this.bpfView(), fault);
        if (backend !== 'bpf') return { filter: withView(await this.backends.backend(backend).set(spec, dev, fault), view), warnings };
        const f = this.attached();
        let info: native.FilterInfo;
        try {
          info = f.putFilter(spec);
        } catch (e) {
          throw fromNative(e, `SetFilter ${file || req.device}`);
        }
        this.media.note(info);
        return { filter: this.toFilter(info, dev, view), warnings };
      } finally {
        await this.settle(); // attached for a filter that went to dm or was refused: detached again
      }
    });
  }

  /** The request's cgroup scope, resolved on this host, and what may keep the filter from seeing its I/O. */
  private scope(req: SetFilterRequest__Output) {
    const q = scopeQuery(req);
    if (!q) return { cgroup: null, warnings: [] };
    const feat = this.caps?.features;
    if (feat && !feat.cgroups) throw precondition(`this kernel cannot scope filters by cgroup${feat.notes.length ? `: ${feat.notes.join('; ')}` : ''}`);
    const m = this.cgroups.mount();
    const cgroup = this.cgroups.resolve(q, m);
    return { cgroup, warnings: this.cgroups.warnings(cgroup, m) };
  }

  deleteFilter(req: DeleteFilterRequest__Output): Promise<DeleteFilterResponse> {
    return this.serial(async () => {
      const t0 = deleteTarget(req);
      // throttle filters (io.max) stand beside the device's other filters: theirs first, then the rest
      const thr = 'id' in t0 ? null : await this.backends.deleteThrottled(t0);
      if (thr && !this.filterer && !this.backends.exclusiveOn(thr.nums)) return thr.res;
      const r = await this.deleteOthers(req);
      return thr ? { existed: true, removed: thr.res.removed! + r.removed!, device: thr.res.device } : r;
    });
  }

  private async deleteOthers(req: DeleteFilterRequest__Output): Promise<DeleteFilterResponse> {
    const viaDm = await this.deleteOnBackends(req);
    if (viaDm) return viaDm;
    if (this.cfg.attachOnDemand && !this.filterer) return { existed: false, removed: 0 }; // idle: no filter to delete
    const f = this.attached();
    const t = deleteTarget(req);
    if ('id' in t) {
      const info = f.getFilter({ id: t.id });
      const dm = this.backends.companions.dmOf(t.id);
      if (info && dm) throw precondition(`filter ${t.id} counts dm filter ${dm.id} on ${dm.name}: delete that one`);
      const removed = f.deleteFilter({ id: t.id });
      await this.settle();
      return { existed: removed > 0, removed, device: info ? this.toFilter(info).device : undefined };
    }
    // a filter on a device that has since disappeared can still be deleted by number
    let dev: DeviceInfo | null = null;
    let nums: { major: number; minor: number };
    try {
      dev = resolveDevice(t.device, this.sysfs);
      nums = dev;
    } catch (e) {
      if (t.device.startsWith('/')) throw e;
      nums = parseDevNumbers(t.device);
    }
    const device = { major: nums.major, minor: nums.minor };
    if (!t.scope && !t.allScopes) refuseIfScoped(t.device, device, f.listFilters());
    const keys = t.scope ? this.cgroups.deleteKeys(t.scope, device, f.listFilters()) : [{ device, allScopes: t.allScopes }];
    const removed = keys.reduce((n, k) => n + f.deleteFilter(k), 0);
    await this.settle();
    return { existed: removed > 0, removed, device: dev ? deviceRef(dev) : device };
  }

  /** Deletes every filter on this host (`iofilterctl halt`); idempotent. Not attached: nothing is in force. */
  clearFilters(): Promise<ClearFiltersResponse> {
    return this.serial(async () => {
      const dm = await this.backends.clear();
      if (!this.filterer) return { removed: dm };
      let removed: number;
      try {
        removed = dm + this.filterer.clearFilters();
      } catch (e) {
        throw fromNative(e, 'ClearFilters');
      }
      this.log.info({ removed }, 'cleared every filter');
      await this.settle();
      return { removed };
    });
  }


  async status(req: { view?: unknown } = {}): Promise<StatusResponse> {
    const view = viewOf(req.view, 'FULL');
    // "not attached" means the link and pins are gone: a Status during an on-demand detach (the
    // reaper's, which no caller waits for) answers once it has finished
    await this.detaching;
    const f = this.filterer;
    const caps = this.caps;
    const counters = f?.counters();
    return {
      kernelRelease: caps?.kernelRelease ?? os.release(),
      btf: caps?.btf ?? false,
      lockdown: caps?.lockdown ?? 'unknown',
      capabilities: (caps?.modes ?? []).map(capabilityOf),
      state: this.state(),
      filters: [...(f ? this.bpfFilters(f).map((x) => this.toFilter(x, undefined, view)) : []), ...this.backends.list().map((x) => withView(x, view))],
      agentVersion: version,
      uptimeMs: String(Date.now() - this.startedAt),
      hostname: os.hostname(),
      limits: limitsOf(this.kernel.limits(), this.cfg.ttl),
      attachError: f ? '' : this.attachError,
      features: caps?.features,
      truncatedIos: String(counters?.truncatedIos ?? 0n),
      eventsLost: String(counters?.eventsLost ?? 0n),
      backends: [this.bpfCapability(), ...this.backends.capabilities()],
      wrapped: this.backends.wrapper.list(),
    };
  }

  private toFilter(f: native.FilterInfo, dev?: DeviceInfo, view: View = 'FULL'): Filter {
    let ref: DeviceRef;
    try {
      ref = deviceRef(dev ?? resolveDevice(`${f.device.major}:${f.device.minor}`, this.sysfs));
    } catch {
      // the device went away (e.g. a detached loop device); the filter is still there
      ref = { major: f.device.major, minor: f.device.minor, sizeSectors: String(f.size), startSector: String(f.offset) };
    }
    return { ...filterOf(f, ref, view), backend: 'BACKEND_BPF', fault: faultToWire(EIO) };
  }

  // ---- Backends: dispatch to the backends beside bpf (agent/backends) ----

  /** What auto needs to know about bpf. */
  private bpfView(): BpfView {
    const f = this.filterer;
    const s = f?.state;
    const enforcing = !!s && s.mode !== 'observe' && !!s.selfTest?.passed;
    const why = !f ? notAttachedWhy(this.cfg, this.attachError) : s?.mode === 'observe' ? 'attached in observe mode (fails nothing)' : 'the hook self-test did not pass';
    return {
      attached: !!f,
      enforcing,
      why,
      hasFilterOn: (dev) => !!f && this.bpfFilters(f).some((x) => x.device.major === dev.major && x.device.minor === dev.minor),
    };
  }

  /** The bpf filters of their own: dm filters' observe counters are shown on the dm filter. */
  private bpfFilters(f: native.Filterer): native.FilterInfo[] {
    return f.listFilters().filter((x) => !this.backends.companions.isCompanion(x));
  }

  private bpfCapability() {
    if (this.cfg.attachOnDemand && !this.filterer && !this.attachError) return idleBpfCapability(this.cfg, this.caps);
    const v = this.bpfView();
    return { backend: 'BACKEND_BPF' as const, available: v.enforcing, reason: v.enforcing ? '' : v.why, detail: this.filterer ? `${this.filterer.state.mode} at ${this.filterer.state.hook}` : '' };
  }

  /** DeleteFilter for a dm filter (by its id, or by a device that has one); null: not a dm filter. */
  private async deleteOnBackends(req: DeleteFilterRequest__Output): Promise<DeleteFilterResponse | null> {
    const t = deleteTarget(req);
    if ('id' in t) return this.backends.deleteFor({ id: t.id });
    if (t.scope) return null;
    let dev: DeviceInfo;
    try {
      dev = resolveDevice(t.device, this.sysfs);
    } catch {
      return null;
    }
    const r = await this.backends.deleteFor(dev);
    return r && { ...r, device: deviceRef(dev) };
  }

  wrap(device: string, name: string): Promise<WrapResponse> {
    return this.serial(async () => ({ wrapped: await this.backends.wrap(device, name) }));
  }

  unwrap(name: string): Promise<UnwrapResponse> {
    return this.serial(async () => ({ existed: await this.backends.unwrap(name) }));
  }
}
