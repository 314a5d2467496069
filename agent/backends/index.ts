// The backends beside bpf, as the service sees them: which one serves a request
// (auto), the persisted backends (persisted.ts) with their state dir, owner lock and
// watchdog, and wrap.
// The service keeps the bpf path itself and calls in here from a few clearly marked
// methods.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type * as native from '../../native';
import type { BackendCapability } from '../../proto/gen/iofilter/v1/BackendCapability';
import type { DeleteFilterResponse } from '../../proto/gen/iofilter/v1/DeleteFilterResponse';
import { CgroupQuery, CgroupResolver } from '../cgroup';
import type { AgentConfig } from '../config';
import { DeviceInfo, parseDevNumbers, resolveDevice } from '../devices';
import { deviceRef } from '../wire';
import { invalid, precondition } from '../errors';
import type { Logger } from '../log';
import type { DmBackend } from './dm/backend';
import { Dmsetup, realExec } from './dm/dmsetup';
import { flockLocker, isWatchdog, Locker, OwnerLock } from './dm/lock';
import { Companions } from './dm/count';
import { Clock, DM_ID_BASE, StateDir, systemClock } from './dm/state';
import { describeFault } from '../../proto/faults';
import { EIO, FaultSpec, faultToWire } from '../faults';
import { PersistedDeps, persistedBackends } from './persisted';
import type { ThrottleBackend } from './throttle/backend';
import { BACKEND_WIRE, backendFromWire, BackendName, PersistedBackend } from './types';
import { Wrapper } from './wrap';

export interface BackendDeps {
  dmsetup?: Dmsetup;
  clock?: Clock;
  release?: string;
  sysfs?: string;
  /** blkinject: debugfs mount point and test doubles (persisted.ts). */
  debugfs?: string;
  blkFiles?: PersistedDeps['blkFiles'];
  blkProbe?: PersistedDeps['blkProbe'];
  /** Where cgroup scopes are resolved (the throttle backend's io.max files). */
  cgroups?: CgroupResolver;
  /** Default: flock(1) on <stateDir>/owner/lock. */
  locker?: Locker;
  /** Starts the watchdog (tests substitute); default: dist/agent/watchdog.js, detached. */
  spawnWatchdog?: (stateDir: string) => number;
  /** The attached bpf handle, for counting dm filters under an observe attach (dm/count.ts). */
  bpf?: () => native.Filterer | null;
}

/** What the service knows about bpf when choosing. */
export interface BpfView {
  attached: boolean;
  enforcing: boolean; // an enforcing mode attached and self-tested
  why: string; // why bpf cannot fail I/O here, when !enforcing
  hasFilterOn(dev: DeviceInfo): boolean;
}

export function spawnWatchdog(stateDir: string): number {
  const log = fs.openSync(path.join(stateDir, 'watchdog.log'), 'a', 0o600);
  const child = spawn(process.execPath, [path.join(__dirname, '..', 'watchdog.js'), '--state-dir', stateDir], { detached: true, stdio: ['ignore', log, log] });
  fs.closeSync(log);
  child.unref();
  return child.pid ?? 0;
}

export class Backends {
  readonly state: StateDir;
  readonly dm: DmBackend;
  readonly throttle: ThrottleBackend;
  /** Every persisted backend (dm first). */
  readonly all: PersistedBackend[];
  readonly wrapper: Wrapper;
  /** The observe counters of dm filters. */
  readonly companions: Companions;
  private lock: OwnerLock | null = null;
  private watchdogPid = 0;

  constructor(
    private readonly cfg: AgentConfig,
    private readonly log: Logger,
    private readonly deps: BackendDeps,
  ) {
    this.state = new StateDir(cfg.stateDir);
    const dm = deps.dmsetup ?? new Dmsetup(realExec());
    const clock = deps.clock ?? systemClock;
    this.companions = new Companions(deps.bpf ?? (() => null), this.state, clock, log, deps.sysfs);
    const p = persistedBackends({ state: this.state, dmsetup: dm, clock, release: deps.release ?? os.release(), log, sysfs: deps.sysfs, cgroups: deps.cgroups, debugfs: deps.debugfs, blkFiles: deps.blkFiles, blkProbe: deps.blkProbe, onFault: () => this.ensureWatchdog(), counting: this.companions });
    this.dm = p.dm;
    this.throttle = p.throttle;
    this.all = p.all;
    this.wrapper = new Wrapper(dm, this.state, deps.sysfs);
  }

  /** Probes each backend; with state left by an earlier agent, takes the state dir and restores what expired before serving. */
  async start(): Promise<void> {
    for (const b of this.all) {
      const cap = await b.probe();
      this.log.info({ backend: b.name, available: cap.available, reason: cap.reason || undefined, detail: cap.detail || undefined }, 'backend');
    }
    if (!this.all.some((b) => b.list().length || b.unsettled?.())) return;
    await this.own();
    const n = await this.restoreExpired();
    if (n) this.log.info({ restored: n }, 'restored faults that expired while no agent ran');
    if (this.all.some((b) => b.hasDeadlines())) this.ensureWatchdog();
  }

  /** The state dir's owner lock: a watchdog holding it is told to stop; another agent is an error. */
  async own(): Promise<void> {
    if (this.lock) return;
    const deadline = Date.now() + 15_000;
    for (;;) {
      const r = await (this.deps.locker ?? flockLocker)(this.cfg.stateDir);
      if ('lock' in r) {
        this.lock = r.lock;
        return;
      }
      if (r.holder && isWatchdog(r.holder)) process.kill(r.holder, 'SIGTERM');
      else if (r.holder) throw precondition(`state dir ${this.cfg.stateDir} is in use by pid ${r.holder} (another agent? give each agent its own stateDir)`);
      if (Date.now() > deadline) throw precondition(`state dir ${this.cfg.stateDir}: the watchdog holding it did not stop in 15 s`);
      await new Promise((res) => setTimeout(res, 100));
    }
  }

  close(): void {
    this.lock?.release(); // the watchdog takes over the deadlines
    this.lock = null;
  }

  private ensureWatchdog(): void {
    if (this.watchdogPid && alive(this.watchdogPid)) return;
    const spawnIt = this.deps.spawnWatchdog ?? spawnWatchdog;
    this.watchdogPid = spawnIt(this.cfg.stateDir);
    this.log.info({ pid: this.watchdogPid, stateDir: this.cfg.stateDir }, 'watchdog started: dm, blkinject and throttle TTLs hold without the agent');
  }

  capabilities(): BackendCapability[] {
    const served = new Set(this.all.map((b) => b.name));
    const later = (['blkinject', 'throttle'] as const).filter((n) => !served.has(n)).map((n): BackendCapability => ({ backend: BACKEND_WIRE[n], available: false, reason: 'not served by this agent version', detail: '' }));
    const order = Object.values(BACKEND_WIRE);
    return [...this.all.map((b) => b.capability()), ...later].sort((x, y) => order.indexOf(x.backend as never) - order.indexOf(y.backend as never));
  }

  /**
   * Which backend serves `spec` with `fault` on `dev`; throws the reason when none can,
   * exactly. auto: bpf when an enforcing mode is attached and the fault is EIO, else
   * the first persisted backend that can; an explicit backend is held to its word.
   * Exclusive backends (dm) and bpf keep off each other's devices; throttle (io.max)
   * stands beside either.
   */
  async choose(requested: unknown, spec: native.FilterSpec, dev: DeviceInfo, bpf: BpfView, fault: FaultSpec = EIO): Promise<BackendName> {
    const want = backendFromWire(requested);
    if (!want) throw invalid(`backend: unknown value ${JSON.stringify(requested)} (${['BACKEND_AUTO', ...Object.values(BACKEND_WIRE)].join(', ')})`);
    const other = this.all.find((b) => b.exclusive && b.faultOn(dev));
    const eio = fault.kind === 'error' && fault.status.tag === 'IOERR';
    const bpfWhy = eio ? bpf.why : `the program at should_fail_bio fails with EIO only, not ${describeFault(faultToWire(fault))}`;
    if (want === 'bpf' || (want === 'auto' && bpf.enforcing && eio)) {
      if (want === 'bpf' && !eio) throw precondition(`backend bpf: ${bpfWhy}`);
      if (other) throw precondition(`${dev.name} has a ${other.name} filter (id ${other.faultOn(dev)!.id}): delete it before setting a bpf filter`);
      return 'bpf';
    }
    // an agent attached in observe mode keeps counting EIO filters on plain devices, as
    // before: auto does not turn them into real faults through blkinject (ask by name)
    const tried = want === 'auto' ? this.all.filter((b) => !(b.name === 'blkinject' && eio && bpf.attached)) : this.all.filter((b) => b.name === want);
    if (!tried.length) throw precondition(`backend ${want}: not served by this agent version`);
    const why: string[] = [];
    for (const b of tried) {
      const r = await b.refusal(spec, dev, fault);
      if (r) {
        why.push(`${b.name}: ${r}`);
        continue;
      }
      if (b.exclusive && bpf.hasFilterOn(dev)) throw precondition(`${dev.name} has a bpf filter: delete it before setting a ${b.name} filter`);
      if (b.exclusive && other && other !== b) throw precondition(`${dev.name} has a ${other.name} filter (id ${other.faultOn(dev)!.id}): delete it before setting a ${b.name} filter`);
      await this.own();
      return b.name;
    }
    if (want !== 'auto') throw precondition(`backend ${why[0]}`);
    // auto, nothing enforcing: an observe attach keeps serving EIO filters (it counts, fails nothing)
    if (eio && bpf.attached && !this.dm.dmName(dev)) return 'bpf';
    const works =
      fault.kind === 'throttle'
        ? '' // the throttle backend's own reason says what it needs
        : fault.kind === 'error' && !eio
        ? 'What would work: the blkinject backend, on a kernel with CONFIG_BLK_ERROR_INJECTION (Linux 7.2+; Debian sid 7.2 ships it off) and debugfs mounted: only the block layer itself ends a bio with another status'
        : `What would work: a kernel with error injection (attach fmod_ret or kprobe)${fault.kind === 'error' ? ' or with block error injection (CONFIG_BLK_ERROR_INJECTION, Linux 7.2+)' : ''}, ` +
          'or a dm device: an LVM LV, or `iofilterctl wrap DEV --name NAME` on an unmounted device';
    throw precondition(`no backend can do ${describeFault(faultToWire(fault))} on ${dev.name} exactly as asked: bpf: ${bpfWhy}; ${why.join("; ")}${works ? `. ${works}` : ""}`);
  }

  /** The persisted backend called `name`. */
  backend(name: BackendName): PersistedBackend {
    const b = this.all.find((x) => x.name === name);
    if (!b) throw precondition(`backend ${name}: not served by this agent version`);
    return b;
  }

  /** DeleteFilter on the persisted backends: by id (theirs are 2^31 and up) or by device. Null: not theirs. */
  async deleteFor(t: { id: number } | { major: number; minor: number }): Promise<DeleteFilterResponse | null> {
    if ('id' in t && t.id < DM_ID_BASE) return null;
    const b = this.all.find((x) => ('id' in t ? x.owns(t.id) : x.exclusive && x.faultOn(t)));
    if (!b) return 'id' in t ? { existed: false, removed: 0 } : null;
    const f = b.list().find((x) => ('id' in t ? x.id === t.id : x.device?.major === t.major && x.device?.minor === t.minor))!;
    await this.own();
    const removed = await b.delete('id' in t ? { id: t.id } : { device: t });
    return { existed: removed > 0, removed, device: f.device ?? undefined };
  }

  /**
   * DeleteFilter by device for throttle filters, which are always cgroup-scoped and stand
   * beside the device's other filters: the scope's, or every one (all_scopes). A delete
   * with neither is refused while any stand, as refuseIfScoped does for bpf. Null: none removed.
   */
  async deleteThrottled(t: { device: string; scope: CgroupQuery | null; allScopes: boolean }): Promise<{ res: DeleteFilterResponse; nums: { major: number; minor: number } } | null> {
    let dev: DeviceInfo | null = null;
    let nums: { major: number; minor: number };
    try {
      nums = dev = resolveDevice(t.device, this.deps.sysfs);
    } catch {
      if (t.device.startsWith('/')) return null; // the caller's own path reports it
      nums = parseDevNumbers(t.device);
    }
    const on = this.throttle.onDevice(nums);
    if (!on.length) return null;
    if (!t.scope && !t.allScopes) {
      const each = on.map((r) => `filter ${r.id} for cgroup ${r.cgroup.path} (delete it with --cgroup ${r.cgroup.path} or --id ${r.id})`);
      throw precondition(
        `${t.device} has ${on.length === 1 ? 'a throttle filter' : `${on.length} throttle filters`} (cgroup io.max, always cgroup-scoped) that a delete without a scope would leave in force; ` +
          `nothing was deleted: ${each.join('; ')}. --all-scopes deletes every filter on ${t.device}`,
      );
    }
    const cg = t.scope ? (this.deps.cgroups ?? new CgroupResolver()).deleteScope(t.scope) : null;
    const mine = on.filter((r) => !cg || ('id' in cg ? r.cgroup.id === String(cg.id) : r.cgroup.path === cg.path));
    if (!mine.length) return null;
    await this.own();
    const removed = cg ? await this.throttle.deleteScoped(nums, cg) : await this.throttle.delete({ device: nums });
    return { res: { existed: removed > 0, removed, device: dev ? deviceRef(dev) : nums }, nums };
  }

  /** Whether an exclusive backend (dm) has a filter on the device. */
  exclusiveOn(dev: { major: number; minor: number }): boolean {
    return this.all.some((b) => b.exclusive && b.faultOn(dev));
  }

  async clear(): Promise<number> {
    if (!this.all.some((b) => b.list().length)) return 0;
    await this.own();
    let n = 0;
    let first: unknown = null;
    for (const b of this.all) n += await b.clear().catch((e: unknown) => ((first ??= e), 0));
    if (first) throw first;
    return n;
  }

  /** The agent's own TTL pass (the watchdog does the same when the agent is gone). */
  async restoreExpired(): Promise<number> {
    if (!this.lock) return 0;
    let n = 0;
    for (const b of this.all) n += await b.restoreExpired();
    return n;
  }

  list() {
    return this.all.flatMap((b) => b.list());
  }

  async wrap(device: string, name: string) {
    await this.own();
    return this.wrapper.wrap(device, name);
  }

  async unwrap(name: string) {
    await this.own();
    return this.wrapper.unwrap(name, (devno) => {
      const [major, minor] = devno.split(':').map(Number);
      return this.all.some((b) => b.faultOn({ major, minor }));
    });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
