// The backends beside bpf, as the service sees them: which one serves a request
// (auto), the dm backend with its state dir, owner lock and watchdog, and wrap.
// The service keeps the bpf path itself and calls in here from a few clearly marked
// methods.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type * as native from '../../native';
import type { BackendCapability } from '../../proto/gen/iofilter/v1/BackendCapability';
import type { DeleteFilterResponse } from '../../proto/gen/iofilter/v1/DeleteFilterResponse';
import type { AgentConfig } from '../config';
import type { DeviceInfo } from '../devices';
import { invalid, precondition } from '../errors';
import type { Logger } from '../log';
import { DmBackend } from './dm/backend';
import { Dmsetup, realExec } from './dm/dmsetup';
import { flockLocker, isWatchdog, Locker, OwnerLock } from './dm/lock';
import { Clock, DM_ID_BASE, StateDir, systemClock } from './dm/state';
import { backendFromWire, BackendName } from './types';
import { Wrapper } from './wrap';

export interface BackendDeps {
  dmsetup?: Dmsetup;
  clock?: Clock;
  release?: string;
  sysfs?: string;
  /** Default: flock(1) on <stateDir>/owner/lock. */
  locker?: Locker;
  /** Starts the watchdog (tests substitute); default: dist/agent/watchdog.js, detached. */
  spawnWatchdog?: (stateDir: string) => number;
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
  readonly wrapper: Wrapper;
  private lock: OwnerLock | null = null;
  private watchdogPid = 0;

  constructor(
    private readonly cfg: AgentConfig,
    private readonly log: Logger,
    private readonly deps: BackendDeps,
  ) {
    this.state = new StateDir(cfg.stateDir);
    const dm = deps.dmsetup ?? new Dmsetup(realExec());
    this.dm = new DmBackend({ state: this.state, dm, clock: deps.clock ?? systemClock, release: deps.release ?? os.release(), log, sysfs: deps.sysfs, onFault: () => this.ensureWatchdog() });
    this.wrapper = new Wrapper(dm, this.state, deps.sysfs);
  }

  /** Probes dm; with dm state left by an earlier agent, takes the state dir and restores what expired before serving. */
  async start(): Promise<void> {
    const cap = await this.dm.probe();
    this.log.info({ backend: 'dm', available: cap.available, reason: cap.reason || undefined, detail: cap.detail || undefined }, 'backend');
    if (!this.state.faults().length) return;
    await this.own();
    const n = await this.dm.restoreExpired();
    if (n) this.log.info({ restored: n }, 'restored dm faults that expired while no agent ran');
    if (this.state.faults().some((f) => f.deadline)) this.ensureWatchdog();
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
    this.log.info({ pid: this.watchdogPid, stateDir: this.cfg.stateDir }, 'watchdog started: dm TTLs hold without the agent');
  }

  capabilities(): BackendCapability[] {
    const later = (b: 'BACKEND_BLKINJECT' | 'BACKEND_THROTTLE'): BackendCapability => ({ backend: b, available: false, reason: 'not served by this agent version', detail: '' });
    return [this.dm.capability(), later('BACKEND_BLKINJECT'), later('BACKEND_THROTTLE')];
  }

  /** Which backend serves `spec` on `dev`; throws the reason when none can, exactly. */
  async choose(requested: unknown, spec: native.FilterSpec, dev: DeviceInfo, bpf: BpfView): Promise<BackendName> {
    const want = backendFromWire(requested);
    if (!want) throw invalid(`backend: unknown value ${JSON.stringify(requested)} (BACKEND_AUTO, BACKEND_BPF, BACKEND_DM)`);
    if (want === 'blkinject' || want === 'throttle') throw precondition(`backend ${want}: not served by this agent version`);
    const dmFault = this.dm.faultOn(dev);
    if (want === 'bpf' || (want === 'auto' && bpf.enforcing)) {
      if (dmFault) throw precondition(`${dev.name} has a dm filter (id ${dmFault.id}): delete it before setting a bpf filter`);
      return 'bpf';
    }
    const why = await this.dm.refusal(spec, dev);
    if (!why) {
      if (bpf.hasFilterOn(dev)) throw precondition(`${dev.name} has a bpf filter: delete it before setting a dm filter`);
      await this.own();
      return 'dm';
    }
    if (want === 'dm') throw precondition(`backend dm: ${why}`);
    // auto, nothing enforcing: an observe attach keeps serving (it counts, fails nothing)
    if (bpf.attached && !this.dm.dmName(dev)) return 'bpf';
    throw precondition(
      `no backend can fail I/O on ${dev.name} exactly as asked: bpf: ${bpf.why}; dm: ${why}. ` +
        'What would work: a kernel with error injection (attach fmod_ret or kprobe), or a dm device: an LVM LV, or `iofilterctl wrap DEV --name NAME` on an unmounted device',
    );
  }

  /** DeleteFilter on the dm backend: by id (dm ids are 2^31 and up) or by device. Null: not a dm filter. */
  async deleteFor(t: { id: number } | { major: number; minor: number }): Promise<DeleteFilterResponse | null> {
    if ('id' in t && t.id < DM_ID_BASE) return null;
    const f = this.state.faults().find((x) => ('id' in t ? x.id === t.id : x.devno === `${t.major}:${t.minor}`));
    if (!f) return 'id' in t ? { existed: false, removed: 0 } : null;
    await this.own();
    await this.dm.delete({ id: f.id });
    const [major, minor] = f.devno.split(':').map(Number);
    return { existed: true, removed: 1, device: { major, minor, name: f.name } };
  }

  async clear(): Promise<number> {
    if (!this.state.faults().length) return 0;
    await this.own();
    return this.dm.clear();
  }

  /** The agent's own TTL pass (the watchdog does the same when the agent is gone). */
  async restoreExpired(): Promise<number> {
    if (!this.lock) return 0;
    return this.dm.restoreExpired();
  }

  async wrap(device: string, name: string) {
    await this.own();
    return this.wrapper.wrap(device, name);
  }

  async unwrap(name: string) {
    await this.own();
    return this.wrapper.unwrap(name, (devno) => this.state.faults().some((f) => f.devno === devno));
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
