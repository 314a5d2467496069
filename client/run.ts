// The experiment runner behind `iofilterctl run`: a health check before anything is
// set, then each step in order - its filters set on its hosts, then held while the
// check runs every interval and once more at the end of the hold. A failing check, a
// host that does not take its step, or abort() (Ctrl-C, SIGTERM) ends the run, and the
// plan's filters are then deleted - each by its device and cgroup scope, as run-targets.ts
// tracks them - from every host it touched. All of it is reported as events, in the
// order it happens.
import type { Filter__Output } from '../proto/gen/iofilter/v1/Filter';
import type { SetFilterRequest } from '../proto/gen/iofilter/v1/SetFilterRequest';
import { CheckResult, runCheck } from './check';
import type { ClientOptions } from './client';
import { HostError, runFleet } from './fleet';
import type { HealthCheck, Schedule } from './plan';
import { exitCode } from './render';
import { Deleted, HostFilters } from './run-targets';

/** Exit bits beyond the fleet's 1 (usage), 2 (a host answered with an error) and 4 (a host gave no answer). */
export const EXIT_ABORTED = 8;
/** Some filter of the plan may still be in force (cleanup could not reach or delete it): its TTL ends it. */
export const EXIT_LEFT_BEHIND = 16;

export type AbortCause = 'check' | 'host' | 'signal';

export interface Leftover {
  host: string;
  /** The plan's filters that may still be in force there, as it named them (target and scope). */
  filters: string[];
}

export interface RunSummary {
  /** Steps whose hold ended with a passing check. */
  stepsDone: number;
  steps: number;
  checks: number;
  /** Hosts the run sent a filter to. */
  touched: number;
  /** Hosts the cleanup deleted on, by outcome; null when the plan keeps its filters. */
  cleanup: { ok: number; failed: number; unreachable: number } | null;
  /** Filters that may remain: the ones cleanup could not delete, or every one with cleanup: keep. */
  remaining: Leftover[];
  /** The longest TTL the run gave a filter: nothing it set outlives that. */
  maxTtlMs: number;
  exitCode: number;
  ms: number;
}

export type RunEvent =
  | { event: 'plan'; dryRun: boolean; file: string; hosts: string[]; check: HealthCheck | null; cleanup: string; steps: { name: string; hosts: string[]; holdMs: number; ttlMs: number; requests: SetFilterRequest[] }[] }
  | { event: 'step'; step: string; index: number; of: number; hosts: string[]; holdMs: number; ttlMs: number }
  | { event: 'host'; step: string; action: 'set'; host: string; ok: boolean; value?: Filter__Output[]; error?: HostError; ms: number }
  | { event: 'host'; step: string; action: 'delete'; host: string; ok: boolean; value?: Deleted[]; error?: HostError; ms: number }
  | { event: 'hold'; step: string; holdMs: number }
  | ({ event: 'check'; step: string | null; n: number } & CheckResult)
  | { event: 'held'; step: string; holdMs: number; checks: number }
  | { event: 'abort'; step: string | null; cause: AbortCause; reason: string }
  | { event: 'cleanup'; hosts: string[] }
  | ({ event: 'finished' } & RunSummary)
  | ({ event: 'aborted'; step: string | null; cause: AbortCause; reason: string } & RunSummary);

export interface RunOptions extends Pick<ClientOptions, 'tls'> {
  concurrency: number;
  timeoutMs: number;
}

export function describeCheck(r: CheckResult): string {
  const how = r.timedOut ? `no answer within the timeout` : r.signal ? `killed by ${r.signal}` : `exit ${r.exitCode}`;
  return `${how} after ${r.ms}ms${r.output ? `: ${r.output}` : ''}`;
}

export class ExperimentRun {
  private readonly stop = new AbortController();
  private why: { cause: AbortCause; reason: string; step: string | null } | null = null;
  private step: string | null = null;
  /** host -> the plan's filters there. */
  private readonly targets = new Map<string, HostFilters>();
  private checks = 0;
  private bits = 0;

  constructor(
    private readonly s: Schedule,
    private readonly o: RunOptions,
    private readonly emit: (e: RunEvent) => void,
  ) {}

  get aborted(): boolean {
    return this.why !== null;
  }

  /** Ends the run as soon as it can; the first reason given is the one reported. */
  abort(cause: AbortCause, reason: string): void {
    if (this.why) return;
    this.why = { cause, reason, step: this.step };
    this.emit({ event: 'abort', step: this.step, cause, reason });
    this.stop.abort();
  }

  async run(): Promise<RunSummary> {
    const started = Date.now();
    let stepsDone = 0;
    if (this.s.check) await this.check(); // healthy before anything is set, or nothing is
    for (const st of this.s.steps) {
      if (this.aborted) break;
      this.step = st.name;
      this.emit({ event: 'step', step: st.name, index: st.index, of: this.s.steps.length, hosts: st.hosts, holdMs: st.holdMs, ttlMs: st.ttlMs });
      await this.set(st.name, st.hosts, st.requests);
      if (this.aborted) break;
      await this.hold(st.name, st.holdMs);
      if (this.aborted) break;
      stepsDone++;
    }
    const touched = [...this.targets.values()].filter((m) => m.size).length;
    let cleanup: RunSummary['cleanup'] = null;
    let remaining: Leftover[];
    if (this.aborted || this.s.cleanup === 'delete') {
      ({ cleanup, remaining } = await this.cleanup());
      if (remaining.length) this.bits |= EXIT_LEFT_BEHIND;
    } else {
      remaining = [...this.targets].filter(([, t]) => t.size).map(([host, t]) => ({ host, filters: t.names() }));
    }
    if (this.aborted) this.bits |= EXIT_ABORTED;
    const maxTtlMs = Math.max(0, ...this.s.steps.flatMap((st) => st.requests.map((r) => Number(r.ttlMs))));
    const summary: RunSummary = { stepsDone, steps: this.s.steps.length, checks: this.checks, touched, cleanup, remaining, maxTtlMs, exitCode: this.bits, ms: Date.now() - started };
    this.emit(this.why ? { event: 'aborted', ...this.why, ...summary } : { event: 'finished', ...summary });
    return summary;
  }

  private target(host: string): HostFilters {
    let t = this.targets.get(host);
    if (!t) this.targets.set(host, (t = new HostFilters()));
    return t;
  }

  /** Sets the step's filters on its hosts; the first host that fails aborts, and hosts not yet started are skipped. */
  private async set(step: string, hosts: string[], requests: SetFilterRequest[]): Promise<void> {
    const skipped = new Set<string>();
    const results = await runFleet(
      hosts,
      async (c, host) => {
        if (this.aborted) {
          skipped.add(host);
          throw new Error('skipped: the run was aborted');
        }
        const out: Filter__Output[] = [];
        for (const req of requests) out.push(await this.target(host).set(c, req));
        return out;
      },
      {
        concurrency: this.o.concurrency,
        timeoutMs: this.o.timeoutMs,
        tls: this.o.tls,
        onProgress: (_d, _t, r) => {
          if (skipped.has(r.host)) return;
          this.emit({ event: 'host', step, action: 'set', host: r.host, ok: r.ok, value: r.value as Filter__Output[] | undefined, error: r.error, ms: r.ms });
          if (!r.ok) this.abort('host', `${r.host} did not take step "${step}": ${r.error?.kind === 'unreachable' ? 'unreachable' : r.error?.code}: ${r.error?.message}`);
        },
      },
    );
    this.bits |= exitCode(results.filter((r) => !skipped.has(r.host)));
  }

  /** Checks at the start of the hold, every interval, and at its end; returns early on abort. */
  private async hold(step: string, holdMs: number): Promise<void> {
    this.emit({ event: 'hold', step, holdMs });
    const start = Date.now();
    const end = start + holdMs;
    const before = this.checks;
    if (!this.s.check) await this.sleep(holdMs);
    else {
      for (let due = start; ; due = Math.min(due + this.s.check.everyMs, end)) {
        await this.sleep(due - Date.now());
        if (this.aborted || !(await this.check()) || due >= end) break;
      }
    }
    if (!this.aborted) this.emit({ event: 'held', step, holdMs, checks: this.checks - before });
  }

  /** One run of the health check; a failure aborts. */
  private async check(): Promise<boolean> {
    const c = this.s.check!;
    // a check script may want to know where the run is
    const env = { IOFILTER_STEP: this.step ?? '', IOFILTER_CHECK: String(this.checks + 1) };
    const r = await runCheck(c.command, { timeoutMs: c.timeoutMs, cwd: c.cwd, env, stop: this.stop.signal });
    if (this.aborted) return false; // killed by the abort: says nothing about health
    this.checks++;
    this.emit({ event: 'check', step: this.step, n: this.checks, ...r });
    if (!r.ok) this.abort('check', `check failed (${describeCheck(r)})`);
    return r.ok;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.aborted || ms <= 0) return resolve();
      const done = () => {
        clearTimeout(timer);
        this.stop.signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.stop.signal.addEventListener('abort', done, { once: true });
    });
  }

  /** Deletes the plan's filters, each by device and scope, on every host the run sent one to. */
  private async cleanup(): Promise<{ cleanup: NonNullable<RunSummary['cleanup']>; remaining: Leftover[] }> {
    this.step = null;
    const hosts = [...this.targets].filter(([, t]) => t.size).map(([h]) => h);
    this.emit({ event: 'cleanup', hosts });
    const results = await runFleet(
      hosts,
      (c, host) => this.targets.get(host)!.delete(c),
      {
        concurrency: this.o.concurrency,
        timeoutMs: this.o.timeoutMs,
        tls: this.o.tls,
        onProgress: (_d, _t, r) => this.emit({ event: 'host', step: 'cleanup', action: 'delete', host: r.host, ok: r.ok, value: r.value as Deleted[] | undefined, error: r.error, ms: r.ms }),
      },
    );
    this.bits |= exitCode(results);
    const count = (kind?: string) => results.filter((r) => !r.ok && r.error?.kind === kind).length;
    return {
      cleanup: { ok: results.filter((r) => r.ok).length, failed: count('error'), unreachable: count('unreachable') },
      remaining: results.filter((r) => !r.ok).map((r) => ({ host: r.host, filters: this.targets.get(r.host)!.names() })),
    };
  }
}
