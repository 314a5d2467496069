// The fan-out section of the summary (issue 25 §3): the curve, the --concurrency sweep
// and mTLS, then the goals, from the results of one run.
import { caseName, FanoutResult } from './fanout';
import type { Goal } from './report';
import { fmt, fmtSpread, median } from './stats';

const goal = (text: string, met: boolean): Goal => ({ text: `${text} -> ${met ? 'MET' : 'NOT MET'}`, met });

export function fanoutTable(rs: FanoutResult[], loadStart: number[], loadEnd: number[]): string[] {
  const la = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
  const lines = [
    `Fan-out, iofilterctl --json over loopback (the real agent code over an in-memory kernel; the agents share the cores with the client; client RLIMIT_NOFILE soft/hard ${rs.find((r) => r.nofile)?.nofile ?? '?'}, not changed by the bench);`,
    `  load average ${la(loadStart)} at the start of the section, ${la(loadEnd)} at its end; median [min-max] over rounds`,
    '  client CPU: user + system seconds of the iofilterctl process; agents CPU: of the endpoint processes during the run',
    `  ${'case'.padEnd(40)} ${'wall ms'.padStart(24)} ${'peak RSS MiB'.padStart(18)} ${'client CPU s'.padStart(19)} ${'agents CPU s'.padStart(19)} ${'peak fds'.padStart(9)} ${'ok'.padStart(13)}`,
  ];
  for (const r of rs)
    lines.push(
      `  ${caseName(r).padEnd(40)} ${fmtSpread(r.wallMs, 0).padStart(24)} ${fmtSpread(r.rssMiB, 0).padStart(18)} ${fmtSpread(r.clientCpuS, 2).padStart(19)} ${fmtSpread(r.agentsCpuS, 2).padStart(19)} ${String(Math.max(...r.peakFds)).padStart(9)} ${`${Math.min(...r.ok)}/${r.endpoints}`.padStart(13)}`,
    );
  return lines;
}

export function fanoutGoals(rs: FanoutResult[]): Goal[] {
  const find = (command: string, endpoints: number, tls = false) => rs.find((r) => r.command === command && r.endpoints === endpoints && r.tls === tls && r.concurrency === null && !r.cli);
  const all = (r: FanoutResult) => Math.min(...r.ok) === r.endpoints;
  const out: Goal[] = [];
  const k = find('set', 1000);
  if (k) out.push(goal(`set on 1000 endpoints under 2 s with the client under 300 MB RSS: ${fmt(median(k.wallMs), 0)} ms, ${fmt(median(k.rssMiB), 0)} MiB, ${Math.min(...k.ok)} ok`, all(k) && median(k.wallMs) < 2000 && median(k.rssMiB) < 300));
  const s = find('set', 10_000);
  if (s) out.push(goal(`set on 10,000 endpoints under 10 s with the client under 500 MB RSS: ${fmt(median(s.wallMs), 0)} ms, ${fmt(median(s.rssMiB), 0)} MiB, ${Math.min(...s.ok)} ok; client CPU ${fmt(median(s.clientCpuS))} s, agents CPU ${fmt(median(s.agentsCpuS))} s`, all(s) && median(s.wallMs) < 10_000 && median(s.rssMiB) < 500));
  const st = find('status', 10_000);
  if (st) out.push(goal(`status on 10,000 endpoints under 15 s: ${fmt(median(st.wallMs), 0)} ms, ${fmt(median(st.rssMiB), 0)} MiB, ${Math.min(...st.ok)} ok; client CPU ${fmt(median(st.clientCpuS))} s, agents CPU ${fmt(median(st.agentsCpuS))} s`, all(st) && median(st.wallMs) < 15_000));
  return out;
}
