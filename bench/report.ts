// The summary's tables and the goals (issues 12 and 14), from the results of one run.
// Medians with their min-max spread everywhere; a ratio's spread is that of the
// per-round ratios (each round measures both cases under the same conditions).
import type { LatencyResult, SetForm } from './control';
import type { CaseResult, DatapathRun } from './datapath';
import type { FirstFailSample } from './first-fail';
import type { NativePerf } from './native-perf';
import type { OnDemandResult } from './ondemand';
import type { ProfileResult } from './profile';
import { differs, fmt, fmtSpread, median, pairedRatios, spread } from './stats';

const byKey = (run: DatapathRun, key: string): CaseResult | undefined => run.cases.find((c) => c.key === key);

/** "1.25 [1.20-1.31]": ratio of medians, then the spread of the per-round ratios. */
function ratio(a: number[], b: number[], digits = 2): string {
  const r = pairedRatios(a, b);
  if (!r.length) return '-';
  const s = spread(r);
  return `${fmt(median(a) / median(b), digits)} [${fmt(s.min, digits)}-${fmt(s.max, digits)}]`;
}

const kiops = (xs: number[]) => xs.map((x) => x / 1000);

export function datapathTable(title: string, run: DatapathRun, markReal: boolean): string[] {
  const none = byKey(run, 'none')!;
  const empty = byKey(run, 'empty')!;
  const lines = [
    title,
    `  kernel ${run.machine.kernel}${run.machine.vm ? ' (guest)' : ''}; empty program and every iofilter case on ${run.hook} (checked per case)`,
    `  IOPS: ${run.iopsRounds} rounds x ${run.seconds} s with bpf_stats off; ns/IO: ${run.timeRounds} rounds x ${run.seconds} s with bpf_stats on; median [min-max]`,
    `  ${'case'.padEnd(50)} ${'kIOPS'.padStart(22)}  ${'x none'.padStart(17)}  ${'ns/IO (program)'.padStart(22)}  ${'x empty'.padStart(17)}`,
  ];
  for (const c of run.cases) {
    const realIops = markReal && c !== none && differs(c.iops, none.iops) ? '*' : ' ';
    const realNs = markReal && c !== empty && c.nsPerIo.length && differs(c.nsPerIo, empty.nsPerIo) ? '*' : ' ';
    lines.push(
      `  ${c.name.padEnd(50)} ${fmtSpread(kiops(c.iops), 1).padStart(22)}  ${(c === none ? '1' : ratio(c.iops, none.iops, 3)).padStart(17)}${realIops} ` +
        `${fmtSpread(c.nsPerIo, 1).padStart(22)}  ${(c.nsPerIo.length ? ratio(c.nsPerIo, empty.nsPerIo) : '-').padStart(17)}${realNs}`,
    );
  }
  if (markReal) lines.push('  * the min-max spreads do not overlap (a real difference); without *, the difference is within the noise');
  for (const a of run.absent ?? []) lines.push(`  ${a.name}: not measured: ${a.why}`);
  const ev = byKey(run, 'matchEv');
  if (ev) lines.push(`  events on: ${fmt(median(ev.events) / run.seconds, 0)} events/s delivered to user space (rate limit 1000 in each second of CLOCK_BOOTTIME: a ${run.seconds} s run spans up to ${run.seconds + 1} of them)`);
  return lines;
}

export function controlTable(rs: LatencyResult[]): string[] {
  const lines = [
    'Control plane, local agent (observe mode; client and agent share the 2 cores); per-round p50/p99: median [min-max]',
    '  SetFilter forms: full = Range messages, answer FULL (every range echoed: every SetFilter before views); basic = Range messages, answer BASIC (the default);',
    '  packed = packed_ranges, answer BASIC (what iofilterctl sends from 64 ranges on)',
    `  ${'rpc'.padEnd(10)} ${'ranges'.padStart(6)} ${'form'.padStart(6)} ${'clients'.padStart(7)}  ${'p50 ms'.padStart(20)}  ${'p99 ms'.padStart(20)}  ${'p99 all calls'.padStart(13)}  ${'max ms'.padStart(7)}  ${'calls/s'.padStart(8)}`,
  ];
  for (const r of rs)
    lines.push(
      `  ${r.rpc.padEnd(10)} ${String(r.ranges || '-').padStart(6)} ${(r.form ?? '-').padStart(6)} ${String(r.clients).padStart(7)}  ${fmtSpread(r.p50Ms, 2).padStart(20)}  ${fmtSpread(r.p99Ms, 2).padStart(20)}  ` +
        `${fmt(r.pooled.p99Ms).padStart(13)}  ${fmt(r.pooled.maxMs, 1).padStart(7)}  ${fmt(median(r.perSecond), 0).padStart(8)}`,
    );
  lines.push('  warm-up (untimed, before round 1: the first calls of a fresh agent and client): ' +
    rs.map((r) => `${r.key} first ${fmt(r.warmup.firstMs, 1)} ms, p99 ${fmt(r.warmup.p99Ms, 1)} ms`).join('; '));
  return lines;
}

export function profileTable(p: ProfileResult, np: NativePerf, ctl: LatencyResult[]): string[] {
  // the profile sends Range messages and takes the default answer: the "basic" form
  const e2e = (ranges: number) => ctl.find((r) => r.rpc === 'SetFilter' && r.clients === 1 && r.ranges === ranges && (r.form ?? 'basic') === 'basic');
  const lines = ['Where a SetFilter goes (1 client; ms per call, p50 / p99):'];
  for (const ranges of [1, 4096]) {
    const e = e2e(ranges);
    lines.push(`  ${ranges} range(s): end to end over gRPC ${e ? `${fmt(median(e.p50Ms))} / ${fmt(e.pooled.p99Ms)}` : '-'}`);
    for (const t of p.timings.filter((x) => x.ranges === ranges)) lines.push(`    ${t.what.padEnd(58)} ${fmt(t.p50Ms, 3).padStart(8)} / ${fmt(t.p99Ms, 3)}`);
  }
  for (const t of p.timings.filter((x) => x.ranges === 0)) lines.push(`  ${t.what.padEnd(60)} ${fmt(t.p50Ms, 3).padStart(8)} / ${fmt(t.p99Ms, 3)}`);
  if (np.ran) {
    lines.push(`  native putFilter with 4096 ranges under perf: ${fmt(np.msPerCall!, 2)} ms per call, of which:`);
    for (const x of np.parts!) lines.push(`    ${x.part.padEnd(58)} ${fmt(x.msPerCall, 2).padStart(8)} ms`);
  } else lines.push(`  native putFilter under perf: not run (${np.reason})`);
  for (const s of p.profiles) {
    lines.push(`  agent CPU profile, ${s.calls} SetFilter calls with ${s.ranges} range(s): ${s.busyMs} ms busy in ${s.wallMs} ms; by component:`);
    lines.push(`    ${s.byComponent.slice(0, 8).map((c) => `${c.component} ${c.pctBusy}%`).join(', ')}`);
    lines.push('    top self time:');
    for (const t of s.top.slice(0, 8)) lines.push(`      ${fmt(t.pctBusy, 1).padStart(5)}%  ${t.fn} ${t.where ? `(${t.where})` : ''} [${t.component}]`);
  }
  return lines;
}

export function firstFailLines(kernel: string, samples: FirstFailSample[]): string[] {
  const ok = samples.reduce((n, s) => n + s.okAfterReturn, 0);
  const after = samples.reduce((n, s) => n + s.writesAfterReturn, 0);
  const unchecked = samples.filter((s) => s.writesAfterReturn === 0).length;
  return [
    `SetFilter -> first EIO (VM, kernel ${kernel}, fmod_ret, TCG; a writer issuing O_DIRECT writes from before the call), ${samples.length} samples:`,
    `  first EIO relative to SetFilter's return: ${fmtSpread(samples.map((s) => s.msToFirstEio), 1)} ms (negative: in force before the call returned)`,
    `  first EIO after the call started: ${fmtSpread(samples.map((s) => s.msCallToFirstEio), 1)} ms; the call itself: ${fmtSpread(samples.map((s) => s.setFilterMs), 1)} ms`,
    `  writes submitted after the return: ${after}, of which succeeded: ${ok} (must be 0)${unchecked ? `; ${unchecked} sample(s) saw no write after the return` : ''}`,
  ];
}

export interface Goal {
  text: string;
  met: boolean;
}

const goal = (text: string, met: boolean): Goal => ({ text: `${text} -> ${met ? 'MET' : 'NOT MET'}`, met });

export function datapathGoals(run: DatapathRun): Goal[] {
  const empty = byKey(run, 'empty')!.nsPerIo;
  const ns = (k: string) => byKey(run, k)!.nsPerIo;
  const x = (k: string) => median(ns(k)) / median(empty);
  const show = (k: string) => `${fmt(median(ns(k)), 1)} ns vs ${fmt(median(empty), 1)} ns = ${ratio(ns(k), empty)}x`;
  const out = [
    goal(`no filter for this device (another device filtered) <= 1.2x the empty program: ${show('elsewhere')}`, x('elsewhere') <= 1.2),
  ];
  const worst = x('outside1') >= x('r1') ? 'outside1' : 'r1';
  out.push(goal(`this device filtered, I/O outside its ranges <= 1.5x: 1 range outside fio's region ${fmt(x('outside1'))}x, 1 range inside it ${fmt(x('r1'))}x; worst ${show(worst)}`, x(worst) <= 1.5));
  const ttl = (k: string) => (byKey(run, k) ? `; with a TTL, as the agent sets by default: ${show(k)}` : '');
  out.push(goal(`4096 non-matching ranges <= 2.0x: ${show('r4096')}${ttl('r4096ttl')}`, x('r4096') <= 2.0));
  // logarithmic growth: 64 -> 512 and 512 -> 4096 are three doublings each; the second
  // step may not cost more per doubling than the first (beyond the spread)
  const m = (k: string) => median(ns(k));
  const step1 = (m('r512') - m('r64')) / 3;
  const step2 = (m('r4096') - m('r512')) / 3;
  const slack = (spread(ns('r4096')).max - spread(ns('r4096')).min) / 3;
  out.push(goal(
    `cost grows at most logarithmically with the range count: 1/64/512/4096 ranges ${['r1', 'r64', 'r512', 'r4096'].map((k) => fmt(m(k), 1)).join('/')} ns; ` +
      `per doubling 64->512 ${fmt(step1, 1)} ns, 512->4096 ${fmt(step2, 1)} ns (spread of 4096 per doubling ${fmt(slack, 1)} ns)`,
    step2 <= Math.max(step1, 0) + slack,
  ));
  out.push(goal(`matching observe filter (every I/O counted, events off) <= 2.5x: ${show('match')}${ttl('matchTtl')}; with events on ${show('matchEv')} (no goal)`, x('match') <= 2.5));
  return out;
}

export function controlGoals(rs: LatencyResult[]): Goal[] {
  const one = (ranges: number, form?: SetForm) => rs.find((x) => x.rpc === 'SetFilter' && x.clients === 1 && x.ranges === ranges && x.form === form)!;
  const line = (r: LatencyResult) => `${fmt(r.pooled.p99Ms)} ms over ${r.pooled.calls} calls (per round ${fmtSpread(r.p99Ms, 2)}; p50 ${fmt(median(r.p50Ms))} ms)`;
  const full = one(4096, 'full');
  const basic = one(4096, 'basic');
  const packed = one(4096, 'packed');
  const before = `; before views, the same calls answered FULL: p99 ${fmt(full.pooled.p99Ms)} ms, p50 ${fmt(median(full.p50Ms))} ms`;
  return [
    goal(`SetFilter p99 under 5 ms with one client, 1-range filters: ${line(one(1))}`, one(1).pooled.p99Ms < 5),
    goal(`SetFilter p99 under 5 ms with one client, 4096 ranges as iofilterctl sends them (packed_ranges, answer BASIC): ${line(packed)}${before}`, packed.pooled.p99Ms < 5),
    goal(`SetFilter p99 under 5 ms with one client, 4096 ranges as Range messages (answer BASIC, the default): ${line(basic)}`, basic.pooled.p99Ms < 5),
  ];
}

export function firstFailGoal(samples: FirstFailSample[]): Goal {
  const ok = samples.reduce((n, s) => n + s.okAfterReturn, 0);
  const after = samples.reduce((n, s) => n + s.writesAfterReturn, 0);
  return goal(`every write submitted after SetFilter returned failed: ${ok} of ${after} succeeded over ${samples.length} samples`, ok === 0 && after > 0);
}

/** Attach on demand: what the first SetFilter, the last delete and expiry cost (issue 25). */
export function onDemandLines(r: OnDemandResult): string[] {
  const row = (what: string, xs: number[], digits = 1) => `  ${what.padEnd(62)} ${fmtSpread(xs, digits).padStart(24)}`;
  return [
    `Attach on demand, local agent (observe; ${r.firstSetMs.length} samples, ms: median [min-max]):`,
    row('first SetFilter on an idle agent (attach + self-test + filter)', r.firstSetMs),
    row('SetFilter while attached (the same filter replaced)', r.attachedSetMs, 2),
    row('last DeleteFilter (delete + detach)', r.lastDeleteMs),
    row('filter deadline -> Status "not attached" (reaper tick + detach)', r.expiryToDetachMs, 0),
  ];
}

/** The idle on-demand agent must cost what no program costs: IOPS within the noise of "no program". */
export function onDemandGoal(host: DatapathRun): Goal | null {
  const none = byKey(host, 'none');
  const idle = byKey(host, 'ondemand');
  if (!none || !idle) return null;
  const met = !differs(idle.iops, none.iops);
  return {
    text: `idle host on demand costs what no program costs: ${fmtSpread(kiops(idle.iops), 1)} vs ${fmtSpread(kiops(none.iops), 1)} kIOPS = ${ratio(idle.iops, none.iops, 3)}x, ${met ? 'within' : 'beyond'} the noise -> ${met ? 'MET' : 'NOT MET'}`,
    met,
  };
}
