// `iofilterctl run PLAN` as people and scripts see it: the plan checked and scheduled,
// --dry-run, one `host:` line per host result, a live status line on a terminal
// (stderr), --json events on stdout, the summary on stderr, Ctrl-C and SIGTERM turned
// into an abort (a second one leaves at once), and the exit code.
import pc from 'picocolors';
import type { SetFilterRequest } from '../proto/gen/iofilter/v1/SetFilterRequest';
import { wireOpWord } from '../proto/names';
import { formatDuration } from './args';
import type { Io, Options } from './cli';
import { loadPlan, Schedule, schedule } from './plan';
import { Colors, describeFilter } from './render';
import { describeCheck, EXIT_ABORTED, EXIT_LEFT_BEHIND, ExperimentRun, RunEvent, RunSummary } from './run';
import { deletedLine } from './run-targets';
import { targetText } from './scope';

export const RUN_HELP = `
Plan (YAML or JSON; checked whole, with line:col, before anything is sent):
  hosts: [db1, db2:7000]        # or hostsFile: F (beside the plan); --host replaces both
  check: { command: CMD, every: 5s, timeout: 3s }   # optional; sh -c in the plan's dir
  steps:
    - name: canary
      hosts: 1                  # a count, "10%" or all; earlier steps' hosts stay in
      set: { device: "259:2", ops: [write], ranges: ["0-2047"], probability: 0.5 }
      hold: 2m                  # the check runs at its start, each interval, at its end
    - set: { file: /var/lib/db/base/16384, cgroup: /system.slice/db.service, ops: [read] }
                                # device or file; at most one of cgroup, cgroupId, pid
  cleanup: delete               # or keep (filters then end with their TTL)
Each filter carries a TTL of what is left of the plan (set's own ttl may only be longer).

Exit code of run, bitwise: 0 finished (and cleaned up, unless the plan keeps its
filters); 1 the plan or the command line is wrong (nothing was sent); 2 some host
answered with an error; 4 some host gave no answer; 8 the run was aborted (check
failed, a host did not take a step, Ctrl-C or SIGTERM) and the plan's filters were
deleted; 16 some filter of the plan may still be in force (cleanup could not delete
it): its TTL, which the run keeps to what is left of the plan, ends it.`;

const list = (hosts: string[], max = 8) => hosts.slice(0, max).join(', ') + (hosts.length > max ? `, ... (${hosts.length - max} more)` : '');
const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? '' : 's'}`;

/** What a request asks for (target, scope, ranges), before any agent has resolved it. */
export function describeRequest(r: SetFilterRequest): string {
  const ranges = r.ranges?.length
    ? r.ranges.map((x) => `${x.start}-${x.end} ${(x.ops ?? []).map((o) => wireOpWord(String(o))).join(',')}`).join('; ')
    : `whole ${r.file ? 'file' : 'device'} ${(r.wholeDeviceOps ?? []).map((o) => wireOpWord(String(o))).join(',')}`;
  const extra = [r.probability !== undefined ? `p=${r.probability}` : '', r.maxFailures !== undefined ? `max ${r.maxFailures}` : ''].filter(Boolean).join(' ');
  return `${targetText(r)}: ${ranges}; ttl ${formatDuration(Number(r.ttlMs))}${extra ? '; ' + extra : ''}`;
}

/** The plan line and, per step, its hosts and what it sets: the dry run, and the header of a real run. */
export function planLines(s: Schedule): string[] {
  const check = s.check ? `check \`${s.check.command}\` every ${formatDuration(s.check.everyMs)} (timeout ${formatDuration(s.check.timeoutMs)})` : 'no check';
  const out = [`plan ${s.file}: ${plural(s.steps.length, 'step')} on ${plural(s.hosts.length, 'host')}; ${check}; cleanup: ${s.cleanup}`];
  for (const st of s.steps) {
    out.push(`step ${st.index + 1}/${s.steps.length} ${st.name}: ${plural(st.hosts.length, 'host')} (${list(st.hosts)}); hold ${formatDuration(st.holdMs)}`);
    for (const r of st.requests) out.push(`  set ${describeRequest(r)}`);
  }
  return out;
}

/** Renders run events: lines on stdout (or JSON), a status line on a terminal's stderr. */
class RunView {
  private readonly c: Colors;
  private status = { step: '', done: 0, total: 0, holdEnd: 0 };
  private lastCheck: { n: number; ok: boolean; at: number } | null = null;
  private shown = false;
  private readonly ticker?: NodeJS.Timeout;

  constructor(
    private readonly io: Io,
    private readonly json: boolean,
    private readonly s: Schedule,
  ) {
    this.c = pc.createColors(io.stdoutTty && !json);
    if (io.stderrTty) this.ticker = setInterval(() => this.draw(), 500);
  }

  private line(s: string): void {
    this.clear();
    this.io.out(s + '\n');
    this.draw();
  }

  private clear(): void {
    if (this.shown) this.io.err('\r\x1b[K');
    this.shown = false;
  }

  private draw(): void {
    if (!this.io.stderrTty || !this.status.step) return;
    const st = this.status;
    const parts = [st.step, `hosts ${st.done}/${st.total}`];
    if (st.holdEnd) parts.push(`hold ${formatDuration(Math.max(0, st.holdEnd - Date.now()))} left`);
    const ch = this.lastCheck;
    if (ch) parts.push(`check #${ch.n} ${ch.ok ? 'ok' : 'FAILED'} ${Math.round((Date.now() - ch.at) / 1000)}s ago`);
    this.io.err(`\r\x1b[K${parts.join(' | ')}`);
    this.shown = true;
  }

  close(): void {
    clearInterval(this.ticker);
    this.clear();
  }

  event(e: RunEvent): void {
    if (this.json) this.io.out(JSON.stringify(e) + '\n');
    const c = this.c;
    switch (e.event) {
      case 'plan':
        if (!this.json) planLines(this.s).forEach((l) => this.line(l));
        break;
      case 'step':
        this.status = { step: `step ${e.index + 1}/${e.of} ${e.step}`, done: 0, total: e.hosts.length, holdEnd: 0 };
        if (!this.json) this.line(c.bold(`step ${e.index + 1}/${e.of} ${e.step}: setting on ${plural(e.hosts.length, 'host')}`));
        break;
      case 'host': {
        this.status.done++;
        if (this.json) break;
        const prefix = `${c.bold(e.host)}: [${e.step}] `;
        if (!e.ok) this.line(`${prefix}${c.red(e.error?.kind === 'unreachable' ? 'unreachable' : `error ${e.error?.code}`)}: ${e.error?.message}`);
        else if (e.action === 'set') for (const f of e.value ?? []) this.line(`${prefix}set ${describeFilter(f)}`);
        else for (const d of e.value ?? []) this.line(`${prefix}${deletedLine(d)}`);
        break;
      }
      case 'hold':
        this.status.holdEnd = Date.now() + e.holdMs;
        break;
      case 'check':
        this.lastCheck = { n: e.n, ok: e.ok, at: Date.now() };
        if (!this.json && (!e.ok || e.step === null)) this.line(`check #${e.n} ${e.ok ? c.green('ok') : c.red('failed')}${e.step ? ` in step ${e.step}` : ' before the first step'}: ${describeCheck(e)}`);
        this.draw();
        break;
      case 'held':
        if (!this.json) this.line(`step ${e.step}: held ${formatDuration(e.holdMs)}${this.s.check ? `, ${plural(e.checks, 'check')} passed` : ''}`);
        break;
      case 'abort':
        if (!this.json) this.line(c.red(c.bold(`ABORTED${e.step ? ` in step ${e.step}` : ''}: ${e.reason}`)));
        break;
      case 'cleanup':
        this.status = { step: 'cleanup', done: 0, total: e.hosts.length, holdEnd: 0 };
        this.lastCheck = null;
        break;
      case 'finished':
      case 'aborted':
        this.end(e);
        break;
    }
  }

  private end(e: Extract<RunEvent, { event: 'finished' | 'aborted' }>): void {
    this.close();
    if (!this.json)
      for (const r of e.remaining)
        this.io.out(`${this.c.bold(r.host)}: [left] ${r.filters.join(', ')}: may stay in force until its TTL (at most ${formatDuration(e.maxTtlMs)} after it was set)\n`);
    const head = e.event === 'finished' ? `finished ${plural(e.steps, 'step')}` : `aborted${e.step ? ` in step ${e.step}` : ''} (${e.stepsDone}/${e.steps} steps done): ${e.reason}`;
    const clean = e.cleanup ? `cleanup on ${plural(e.touched, 'host')}: ${e.cleanup.ok} ok, ${e.cleanup.failed} failed, ${e.cleanup.unreachable} unreachable` : `filters kept on ${plural(e.touched, 'host')}`;
    this.io.err(`${head}; ${plural(e.checks, 'check')}; ${clean} (${formatDuration(e.ms)}, exit ${e.exitCode})\n`);
  }
}

/** `iofilterctl run PLAN [--dry-run]`; resolves the exit code. */
export async function runPlanCommand(a: { file: string; dryRun: boolean }, hosts: string[], opts: Options, io: Io): Promise<number> {
  let s: Schedule;
  try {
    s = schedule(loadPlan(a.file), { hosts, concurrency: opts.concurrency, timeoutMs: opts.timeoutMs });
  } catch (e) {
    io.err(`iofilterctl: ${(e as Error).message}\n`);
    return 1;
  }
  const view = new RunView(io, opts.json, s);
  const plan: RunEvent = {
    event: 'plan', dryRun: a.dryRun, file: s.file, hosts: s.hosts, check: s.check ?? null, cleanup: s.cleanup,
    steps: s.steps.map((st) => ({ name: st.name, hosts: st.hosts, holdMs: st.holdMs, ttlMs: st.ttlMs, requests: st.requests })),
  };
  view.event(plan);
  if (a.dryRun) {
    view.close();
    io.err('dry run: nothing was sent, no check was run\n');
    return 0;
  }
  const run = new ExperimentRun(s, opts, (e) => view.event(e));
  const onSignal = (sig: NodeJS.Signals) => {
    if (!run.aborted) return run.abort('signal', `interrupted (${sig})`);
    view.close();
    io.err(`iofilterctl: ${sig} again: leaving without finishing the cleanup; filters left end with their TTL\n`);
    process.exit(EXIT_ABORTED | EXIT_LEFT_BEHIND);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let summary: RunSummary;
  try {
    summary = await run.run();
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    view.close();
  }
  return summary.exitCode;
}
