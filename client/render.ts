// How results look to people: one `host:`-prefixed line (or block) per host, status
// filters as a table, and the summary line. --json bypasses all of this.
import { describeFault } from '../proto/faults';
import Table from 'cli-table3';
import pc from 'picocolors';
import type { AttachState__Output } from '../proto/gen/iofilter/v1/AttachState';
import type { DeviceRef__Output } from '../proto/gen/iofilter/v1/DeviceRef';
import type { Filter__Output } from '../proto/gen/iofilter/v1/Filter';
import type { SetFilterResponse__Output } from '../proto/gen/iofilter/v1/SetFilterResponse';
import type { StatusResponse__Output } from '../proto/gen/iofilter/v1/StatusResponse';
import { wireModeWord, wireOpWord } from '../proto/names';
import { formatDuration } from './args';
import type { HostResult } from './fleet';
import { cgroupText } from './scope';

export type Colors = ReturnType<typeof pc.createColors>;


export function deviceName(d?: DeviceRef__Output | null): string {
  if (!d) return '?';
  return d.name ? `${d.name} (${d.major}:${d.minor})` : `${d.major}:${d.minor}`;
}

function ttl(f: Filter__Output): string {
  if (!f.hasExpiry) return 'none';
  const ms = Number(f.remainingMs);
  return ms > 0 ? formatDuration(ms) : 'expired';
}

function extras(f: Filter__Output): string {
  const parts = [];
  if (f.probability && f.probability < 1) parts.push(`p=${f.probability}`);
  if (f.maxFailures !== '0') parts.push(`max ${f.maxFailures} (${f.failures} used)`);
  return parts.join(' ');
}

/** "dm" for BACKEND_DM; empty for an agent that does not say (before backends). */
export function backendWord(b?: string | null): string {
  return b && b !== 'BACKEND_UNSPECIFIED' ? b.replace(/^BACKEND_/, '').toLowerCase() : '';
}

/** "error EIO" also for agents that do not say (before fault kinds). */
const faultWord = (f: Filter__Output) => describeFault(f.fault);
/** Said in a filter's line only when it is not plain EIO, the oldest and commonest. */
const faultNote = (f: Filter__Output) => (faultWord(f) === 'error EIO' ? '' : `; ${faultWord(f)}`);

export function describeFilter(f: Filter__Output): string {
  // a BASIC answer has no per-range list: say so rather than print an empty one
  const ranges = !f.ranges.length
    ? `${f.wholeDevice ? 'whole device' : 'ranges'} (not in this view)`
    : f.wholeDevice
      ? `whole device ${f.ranges[0].ops.map(wireOpWord).join(',')}`
      : f.ranges.map((r) => `${r.start}-${r.end} ${r.ops.map(wireOpWord).join(',')}`).join('; ');
  const x = extras(f);
  const scope = cgroupText(f.cgroup);
  // bpf is the default and the oldest agents' only backend: named only when another serves
  const b = backendWord(f.backend);
  return `${deviceName(f.device)}${f.file ? `, file ${f.file}` : ''}${scope ? `, cgroup ${scope}` : ''}: ${ranges}; ttl ${ttl(f)}${x ? '; ' + x : ''}${f.id ? `; filter ${f.id}` : ''}${b && b !== 'bpf' ? `; backend ${b}${f.dm ? ` (${f.dm.name}${f.notCounted ? ', not counted' : ''})` : ''}` : ''}${faultNote(f)}`;
}

/** A SetFilter answer: the filter as stored, then each warning of the agent. */
export function setLines(r: SetFilterResponse__Output, c: Colors): string[] {
  return [`set ${r.filter ? describeFilter(r.filter) : '?'}`, ...r.warnings.map((w) => `${c.yellow('warning:')} ${w}`)];
}

/** A self-test that could not run (no scratch device): the hook was kept without proof. */
const unproven = (s?: AttachState__Output | null) => !!s?.selfTest && !s.selfTest.passed && /^not run\b/.test(s.selfTest.detail);

function stateLine(s?: AttachState__Output | null): string {
  // the default policy (always attached) goes unsaid; on demand is said attached or not
  const onDemand = s?.policy === 'ATTACH_POLICY_ON_DEMAND';
  if (!s?.attached) return onDemand ? 'not attached (attach on demand: no filter)' : 'not attached';
  return `attached ${wireModeWord(s.mode)} (${s.hook})${onDemand ? ' on demand' : ''}${s.adopted ? ', adopted' : ''}${unproven(s) ? ', UNPROVEN (the self-test could not run)' : ''}`;
}

/**
 * What an operator must know about the attached program beyond its mode: a link that
 * is not pinned (filters end with the agent), the attach-time self-test, and each
 * program's misses (I/O it skipped: faults that could not be injected): the kernel's
 * recursion misses and, in kprobe mode, the kprobe's own (re-entry, 6.7+).
 */
export function attachDetailLines(s: AttachState__Output | null | undefined, c: Colors): string[] {
  if (!s?.attached) return [];
  const lines: string[] = [];
  const mode = wireModeWord(s.mode);
  if (!s.pinned)
    lines.push(`  ${c.yellow('pinned: false:')} this kernel cannot pin the ${mode} link${mode === 'kprobe' ? ' (kprobe links need 5.15)' : ''}: the program and its filters end when the agent exits`);
  const t = s.selfTest;
  if (t) lines.push(`  self-test: ${t.passed ? c.green('passed') : unproven(s) ? c.yellow('UNPROVEN') : c.red('FAILED')} at ${new Date(Number(t.atUnixMs)).toISOString()}: ${t.detail}`);
  else lines.push(`  self-test: not run${s.adopted ? ' (pins adopted from an earlier agent)' : ''}`);
  for (const p of s.programs) {
    const misses = p.recursionMisses === undefined ? 'recursion misses n/a (kernel < 5.12)' : p.recursionMisses === '0' ? '0 recursion misses' : c.yellow(`${p.recursionMisses} recursion misses: I/O it skipped, unfiltered`);
    const kprobe =
      p.linkMissed !== undefined
        ? p.linkMissed === '0'
          ? ', 0 kprobe misses'
          : `, ${c.yellow(`${p.linkMissed} kprobe misses: I/O it skipped, unfiltered`)}`
        : mode === 'kprobe'
          ? ', kprobe misses n/a (kernel < 6.7)'
          : '';
    lines.push(`  program ${p.progId} ${p.name}: ${misses}${kprobe}`);
  }
  return lines;
}

export function statusLines(st: StatusResponse__Output, c: Colors): string[] {
  const caps = st.capabilities.map((m) => `${wireModeWord(m.mode)} ${m.available ? c.green('yes') : c.red('no')}`).join(', ');
  const lines = [
    `${st.hostname} kernel ${st.kernelRelease}; ${stateLine(st.state)}; ${caps}; agent ${st.agentVersion}`,
  ];
  lines.push(...attachDetailLines(st.state, c));
  if (!st.state?.attached && st.attachError) lines.push(`  ${c.yellow('not attached:')} ${st.attachError}`);
  for (const m of st.capabilities.filter((m) => !m.available)) lines.push(`  ${wireModeWord(m.mode)}: ${m.reason}`);
  for (const b of st.backends ?? [])
    lines.push(`  backend ${backendWord(b.backend)}: ${b.available ? c.green('yes') : c.red('no')}${b.detail ? ` (${b.detail})` : ''}${b.reason ? `: ${b.reason}` : ''}`);
  for (const w of st.wrapped ?? []) lines.push(`  wrapped ${w.below} (${w.belowDev}) as ${w.path}`);
  if (!st.filters.length) {
    lines.push('  no filters');
    return lines;
  }
  const observe = st.state?.mode === 'MODE_OBSERVE';
  const t = new Table({
    head: ['id', 'device', 'cgroup', 'ranges (sectors)', 'ops', 'fault', 'matched', observe ? 'would fail' : 'failed', 'ttl left', 'limits'],
    style: { head: [], border: [], compact: true },
    chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
  });
  for (const f of st.filters) {
    // --view basic: one row per filter with its totals (I/Os matched and failed) instead of its ranges
    const rows = f.ranges.length ? f.ranges : [{ start: '', end: '', ops: [], matched: f.matchedIos, failed: f.failedIos }];
    rows.forEach((r, i) =>
      t.push([
        i === 0 ? String(f.id || '') : '',
        i === 0 ? deviceName(f.device) + (f.file ? `\nfile ${f.file}` : '') + (f.dm ? `\ndm ${f.dm.name}` : '') + (f.diskseq && f.diskseq !== '0' ? `\nmedium ${f.diskseq}` : '') : '',
        i === 0 ? cgroupText(f.cgroup) ?? 'any' : '',
        !f.ranges.length ? `${f.wholeDevice ? 'whole' : 'ranges'} (basic view)` : f.wholeDevice ? `whole (${r.start}-${r.end})` : `${r.start}-${r.end}`,
        r.ops.map(wireOpWord).join(','),
        i === 0 ? faultWord(f) : '',
        f.notCounted ? 'not counted' : r.matched,
        f.notCounted ? 'not counted' : r.failed,
        i === 0 ? ttl(f) : '',
        i === 0 ? [extras(f), backendWord(f.backend) === 'bpf' ? '' : backendWord(f.backend)].filter(Boolean).join(' ') : '',
      ]),
    );
  }
  lines.push(...t.toString().split('\n'));
  return lines;
}

/** The human lines for one host's result, each prefixed with `host: `. */
export function hostLines<T>(r: HostResult<T>, render: (v: T, c: Colors) => string[], c: Colors): string[] {
  const prefix = `${c.bold(r.host)}: `;
  if (r.ok) return render(r.value as T, c).map((l) => prefix + l);
  const tag = r.error?.kind === 'unreachable' ? c.red('unreachable') : c.red(`error ${r.error?.code}`);
  return [`${prefix}${tag}: ${r.error?.message}`];
}

/** "N ok, N failed, N unreachable": failed = answered with an error. */
export function summary(results: HostResult<unknown>[]): string {
  const ok = results.filter((r) => r.ok).length;
  const unreachable = results.filter((r) => r.error?.kind === 'unreachable').length;
  return `${ok} ok, ${results.length - ok - unreachable} failed, ${unreachable} unreachable`;
}

/** Bitwise: 2 if some host answered with an error, 4 if some host gave no answer. */
export function exitCode(results: HostResult<unknown>[]): number {
  let code = 0;
  for (const r of results) {
    if (r.ok) continue;
    code |= r.error?.kind === 'unreachable' ? 4 : 2;
  }
  return code;
}

/** One host's result as one line of JSON (--json): {host, ok, value | error, ms}. */
export function jsonLine<T>(r: HostResult<T>): string {
  // uint64 fields are already strings (longs: String), so nothing here can lose precision
  return JSON.stringify(r.ok ? { host: r.host, ok: true, value: r.value, ms: r.ms } : { host: r.host, ok: false, error: r.error, ms: r.ms });
}
