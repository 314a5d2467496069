// Experiment plans for `iofilterctl run`: the YAML (or JSON) format, checked with file,
// line and column before anything is sent, and the schedule the runner follows: which
// hosts each step reaches and the TTL each filter it sets carries.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Document, isAlias, isMap, isScalar, isSeq, LineCounter, Node, parseDocument } from 'yaml';
import type { SetFilterRequest } from '../proto/gen/iofilter/v1/SetFilterRequest';
import { OP_NAMES, opFromWord, opToWire, opWord } from '../proto/names';
import { checkDevice, filterTarget, formatDuration, parseCount, parseDuration, parseEventRate, parseHosts, parseProbability, parseRange, TargetNames } from './args';
import { UsageError } from './errors';
import { FAULT_KEYS, faultFromWords, FaultWords } from './faults';
import { normalizeHost } from './hosts';
import { ScopeFlags, scopeFields, ScopeNames, targetKey, targetText } from './scope';

export interface HealthCheck {
  /** Run with /bin/sh -c on the control host, in the plan's directory; exit 0 means healthy. */
  command: string;
  cwd: string;
  everyMs: number;
  timeoutMs: number;
}

/** One filter a step sets on each of its hosts. */
export interface StepFilter {
  /** The request without ttlMs: the schedule decides it. */
  request: SetFilterRequest;
  /** The plan's own `ttl`, if it gave one, and where. */
  ttl?: { ms: number; at: string };
}

export interface StepSpec {
  name: string;
  /** A number of hosts, a share of the plan's hosts (percent), or all of them. */
  hosts: { count: number } | { percent: number } | 'all';
  filters: StepFilter[];
  holdMs: number;
  /** file:line:col of the step's `hosts` value (or the step), for errors found when scheduling. */
  hostsAt: string;
}

export interface ExperimentPlan {
  file: string;
  /** The plan's own hosts, normalised; empty when it names none. */
  hosts: string[];
  check?: HealthCheck;
  steps: StepSpec[];
  /** delete (default): remove the plan's filters at the end; keep: leave them to their TTL. */
  cleanup: 'delete' | 'keep';
}

export interface ScheduledStep {
  index: number;
  name: string;
  hosts: string[];
  holdMs: number;
  /** The TTL of the filters whose plan entry names none: what is left of the plan, at most. */
  ttlMs: number;
  /** What each host of the step is sent, TTL included. */
  requests: SetFilterRequest[];
}

export interface Schedule {
  file: string;
  hosts: string[];
  check?: HealthCheck;
  steps: ScheduledStep[];
  cleanup: 'delete' | 'keep';
}

/** A plan that cannot run; the message starts with file:line:col. */
export class PlanError extends UsageError {}

const DEFAULT_EVERY_MS = 5000;
/** A filter's keys, as the messages of the checks shared with `set` name them. */
const PLAN_TARGET: TargetNames = { context: '', device: 'device', file: 'file', fileArg: 'file', ranges: 'ranges' };
const PLAN_SCOPE: ScopeNames = { cgroup: 'cgroup', cgroupId: 'cgroupId', pid: 'pid' };

/** Reads and checks a plan file; throws PlanError (or UsageError for an unreadable file). */
export function loadPlan(file: string): ExperimentPlan {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read plan ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parsePlan(text, file);
}

/** Parses plan text (YAML 1.2, so JSON too). `file` names it in errors and anchors a relative hostsFile. */
export function parsePlan(text: string, file: string): ExperimentPlan {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const where = (offset: number) => {
    const { line, col } = lc.linePos(offset);
    return `${file}:${line}:${col}`;
  };
  const e = doc.errors[0];
  if (e) throw new PlanError(`${where(e.pos[0])}: ${e.message.replace(/ at line \d+, column \d+:[\s\S]*$/, '')}`);
  return new Reader(doc, where, file).plan();
}

class Reader {
  constructor(
    private readonly doc: Document,
    private readonly where: (offset: number) => string,
    private readonly file: string,
  ) {}

  at(n: unknown): string {
    return this.where((n as Node | null)?.range?.[0] ?? 0);
  }
  fail(n: unknown, msg: string): never {
    throw new PlanError(`${this.at(n)}: ${msg}`);
  }
  /** Runs a parser from args.ts, turning its UsageError into one with a position. */
  parse<T>(n: unknown, key: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof UsageError) this.fail(n, `${key}: ${e.message}`);
      throw e;
    }
  }
  node(n: unknown): Node | null {
    return isAlias(n) ? (n.resolve(this.doc) ?? null) : ((n as Node) ?? null);
  }
  /** A mapping's entries by key; any key not in `allowed` is refused. */
  map(n: unknown, key: string, allowed: string[]): Map<string, Node | null> {
    const m = this.node(n);
    if (!isMap(m)) this.fail(n, `${key}: expected a mapping (${allowed.join(', ')})`);
    const out = new Map<string, Node | null>();
    for (const pair of m.items) {
      const k = isScalar(pair.key) ? String(pair.key.value) : '';
      if (!allowed.includes(k)) this.fail(pair.key, `${key}: unknown key "${k}" (known: ${allowed.join(', ')})`);
      const v = this.node(pair.value);
      if (!v || (isScalar(v) && v.value === null)) this.fail(pair.key, `${key}.${k}: no value given`);
      out.set(k, v);
    }
    return out;
  }
  scalar(n: Node | null, key: string, what: string): string | number | boolean {
    const v = isScalar(n) ? n.value : undefined;
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') this.fail(n, `${key}: expected ${what}`);
    return v;
  }
  /** A scalar as written: `command: true` is a shell command, not a boolean, and `cgroupId: 2^64-1` keeps its digits. */
  str(n: Node | null, key: string, what = 'a string'): string {
    const v = this.scalar(n, key, what);
    const s = typeof v === 'number' && isScalar(n) && n.source !== undefined ? n.source : String(v);
    if (!s.trim()) this.fail(n, `${key}: expected a non-empty string`);
    return s;
  }
  list(n: Node | null, key: string): (Node | null)[] {
    if (!isSeq(n)) this.fail(n, `${key}: expected a list`);
    return n.items.map((i) => this.node(i));
  }
  /** A duration: "500ms", "5m", "1h30m", or a number of seconds. */
  duration(n: Node | null, key: string, positive = true): number {
    const v = this.scalar(n, key, 'a duration (e.g. 30s, 5m)');
    const ms = this.parse(n, key, () => parseDuration(String(v), 'duration'));
    if (positive && ms <= 0) this.fail(n, `${key}: must be more than 0`);
    return ms;
  }

  plan(): ExperimentPlan {
    const top = this.doc.contents;
    if (!top) this.fail(null, 'the plan is empty: it needs at least `steps`');
    const m = this.map(top, 'plan', ['hosts', 'hostsFile', 'check', 'steps', 'cleanup']);
    const hosts = this.hosts(m.get('hosts'), m.get('hostsFile'));
    const check = m.has('check') ? this.check(m.get('check')!) : undefined;
    if (!m.has('steps')) this.fail(top, 'plan: `steps` is missing');
    const stepNodes = this.list(m.get('steps')!, 'steps');
    if (!stepNodes.length) this.fail(m.get('steps'), 'steps: give at least one step');
    const steps = stepNodes.map((s, i) => this.step(s, i));
    const seen = new Map<string, number>();
    steps.forEach((s, i) => {
      if (seen.has(s.name)) this.fail(stepNodes[i], `steps[${i}]: name "${s.name}" is also the name of steps[${seen.get(s.name)}]`);
      seen.set(s.name, i);
    });
    let cleanup: ExperimentPlan['cleanup'] = 'delete';
    if (m.has('cleanup')) {
      const c = this.str(m.get('cleanup')!, 'cleanup');
      if (c !== 'delete' && c !== 'keep') this.fail(m.get('cleanup'), `cleanup: "${c}" is neither delete nor keep`);
      cleanup = c;
    }
    return { file: this.file, hosts, check, steps, cleanup };
  }

  hosts(list: Node | null | undefined, file: Node | null | undefined): string[] {
    const out: string[] = [];
    if (list !== undefined) {
      const items = isSeq(list) ? this.list(list, 'hosts') : [list];
      items.forEach((h, i) => {
        const key = isSeq(list) ? `hosts[${i}]` : 'hosts';
        for (const one of String(this.scalar(h, key, 'a host')).split(',').filter((x) => x.trim()))
          out.push(this.parse(h, key, () => normalizeHost(one)));
      });
    }
    if (file !== undefined) {
      const f = this.str(file, 'hostsFile');
      // relative to the plan, so a plan and its fleet list travel together
      const p = path.resolve(path.dirname(this.file), f);
      out.push(...this.parse(file, 'hostsFile', () => parseHosts([], p)));
    }
    return [...new Set(out)];
  }

  check(n: Node): HealthCheck {
    const m = this.map(n, 'check', ['command', 'every', 'timeout']);
    if (!m.has('command')) this.fail(n, 'check: `command` is missing');
    const command = this.str(m.get('command')!, 'check.command');
    const everyMs = m.has('every') ? this.duration(m.get('every')!, 'check.every') : DEFAULT_EVERY_MS;
    const timeoutMs = m.has('timeout') ? this.duration(m.get('timeout')!, 'check.timeout') : everyMs;
    // a check still running when the next is due would stretch the interval it promises
    if (timeoutMs > everyMs) this.fail(m.get('timeout'), `check.timeout: ${formatDuration(timeoutMs)} is longer than check.every ${formatDuration(everyMs)}`);
    return { command, cwd: path.dirname(path.resolve(this.file)), everyMs, timeoutMs };
  }

  step(n: Node | null, i: number): StepSpec {
    const key = `steps[${i}]`;
    const m = this.map(n, key, ['name', 'hosts', 'set', 'hold']);
    const name = m.has('name') ? this.str(m.get('name')!, `${key}.name`) : `step ${i + 1}`;
    if (!m.has('set')) this.fail(n, `${key}: \`set\` is missing (the filter this step sets)`);
    const set = m.get('set')!;
    const filters = isSeq(set) ? this.list(set, `${key}.set`).map((f, j) => this.filter(f, `${key}.set[${j}]`)) : [this.filter(set, `${key}.set`)];
    if (!filters.length) this.fail(set, `${key}.set: give at least one filter`);
    const keys = filters.map((f) => targetKey(f.request));
    const dup = keys.findIndex((k, j) => keys.indexOf(k) !== j);
    if (dup >= 0) {
      const r = filters[dup].request;
      const hint = r.file ? '' : '; put all its ranges in one';
      this.fail(set, `${key}.set: ${r.file ? 'file' : 'device'} ${targetText(r)} is given twice (the agent keeps one filter per device and cgroup scope: the second would replace the first${hint})`);
    }
    const holdMs = m.has('hold') ? this.duration(m.get('hold')!, `${key}.hold`, false) : 0;
    const hostsNode = m.get('hosts');
    return { name, hosts: m.has('hosts') ? this.hostCount(hostsNode!, `${key}.hosts`) : 'all', filters, holdMs, hostsAt: this.at(hostsNode ?? n) };
  }

  hostCount(n: Node | null, key: string): StepSpec['hosts'] {
    const v = this.scalar(n, key, 'a count, a percentage or all');
    if (v === 'all') return 'all';
    if (typeof v === 'number' && Number.isInteger(v) && v >= 1) return { count: v };
    const pct = typeof v === 'string' ? /^(\d+(?:\.\d+)?)%$/.exec(v.trim()) : null;
    if (pct && Number(pct[1]) > 0 && Number(pct[1]) <= 100) return { percent: Number(pct[1]) };
    this.fail(n, `${key}: "${v}" is not a count (1 or more), a percentage (e.g. 10%) or all`);
  }

  filter(n: Node | null, key: string): StepFilter {
    const m = this.map(n, key, ['device', 'file', 'cgroup', 'cgroupId', 'pid', 'ops', 'ranges', 'ttl', 'probability', 'maxFailures', 'events', 'eventsSpared', 'backend', ...FAULT_KEYS]);
    // each value is checked where it is written, then how they combine where the filter is
    const value = (k: string, what: string, check: (v: string) => unknown): string | undefined => {
      if (!m.has(k)) return undefined;
      const v = this.str(m.get(k)!, `${key}.${k}`, what);
      this.parse(m.get(k), `${key}.${k}`, () => check(v));
      return v;
    };
    const device = value('device', 'MAJ:MIN or a /dev path', checkDevice);
    const file = value('file', 'an absolute path', (f) => filterTarget(undefined, f, false, PLAN_TARGET));
    const target = this.parse(n, key, () => filterTarget(device, file, m.has('ranges'), PLAN_TARGET));
    const flags: ScopeFlags = {
      cgroup: value('cgroup', 'a cgroup path', (c) => scopeFields({ cgroup: c }, PLAN_SCOPE)),
      cgroupId: value('cgroupId', 'a cgroup id', (c) => scopeFields({ cgroupId: c }, PLAN_SCOPE)),
      pid: value('pid', 'a pid', (c) => scopeFields({ pid: c }, PLAN_SCOPE)),
    };
    const scope = this.parse(n, key, () => scopeFields(flags, PLAN_SCOPE));
    // the fault kind, spelled as `set` takes it: error: enospc, delay: 50ms, dropWrites: true, ...
    const words: FaultWords = {};
    for (const k of FAULT_KEYS) {
      if (!m.has(k)) continue;
      if (k === 'dropWrites') {
        const v = this.scalar(m.get(k)!, `${key}.${k}`, 'true');
        if (v !== true) this.fail(m.get(k), `${key}.dropWrites: expected true (leave it out otherwise)`);
        words.dropWrites = true;
      } else words[k] = String(this.scalar(m.get(k)!, `${key}.${k}`, 'a string'));
    }
    const fault = this.parse(n, key, () => faultFromWords(words, (k) => `${key}.${k}`));
    const ownOps = !!fault && !fault.error;
    if (!m.has('ops') && !ownOps) this.fail(n, `${key}: \`ops\` is missing (${OP_NAMES.map(opWord).join(', ')})`);
    const ops = (m.has('ops') ? this.list(m.get('ops')!, `${key}.ops`) : []).map((o, j) => {
      const w = this.str(o, `${key}.ops[${j}]`);
      const op = opFromWord(w.replace('_', '-'));
      if (!op) this.fail(o, `${key}.ops[${j}]: unknown operation "${w}" (${OP_NAMES.map(opWord).join(', ')})`);
      return opToWire(op);
    });
    if (!ops.length && !ownOps) this.fail(m.get('ops'), `${key}.ops: select at least one operation`);
    const request: SetFilterRequest = { ...target, ...scope, ...(fault && { fault }) };
    if (m.has('backend')) {
      const b = this.str(m.get('backend')!, `${key}.backend`, 'a backend');
      if (!['auto', 'bpf', 'dm', 'blkinject', 'throttle'].includes(b)) this.fail(m.get('backend'), `${key}.backend: "${b}" is not one of auto, bpf, dm, blkinject, throttle`);
      if (b !== 'auto') request.backend = `BACKEND_${b.toUpperCase()}` as SetFilterRequest['backend'];
    }
    if (m.has('ranges')) {
      const ranges = this.list(m.get('ranges')!, `${key}.ranges`).map((r, j) => ({
        ...this.parse(r, `${key}.ranges[${j}]`, () => parseRange(String(this.scalar(r, `${key}.ranges[${j}]`, 'START-END')))),
        ops,
      }));
      if (!ranges.length) this.fail(m.get('ranges'), `${key}.ranges: leave it out for the whole device, or give at least one range`);
      request.ranges = ranges;
    } else {
      request.wholeDeviceOps = ops;
    }
    if (m.has('probability')) {
      const p = m.get('probability')!;
      request.probability = this.parse(p, `${key}.probability`, () => parseProbability(String(this.scalar(p, `${key}.probability`, 'a number'))));
    }
    if (m.has('maxFailures')) {
      const k = m.get('maxFailures')!;
      request.maxFailures = this.parse(k, `${key}.maxFailures`, () => parseCount(this.str(k, `${key}.maxFailures`, 'a count'), 'count', 1));
    }
    if (m.has('events')) {
      const k = m.get('events')!;
      request.eventsPerSecond = this.parse(k, `${key}.events`, () => parseEventRate(this.str(k, `${key}.events`, 'events per second'), 'events per second'));
    }
    if (m.has('eventsSpared')) {
      const b = m.get('eventsSpared')!;
      const v = this.scalar(b, `${key}.eventsSpared`, 'true or false');
      if (typeof v !== 'boolean') this.fail(b, `${key}.eventsSpared: expected true or false`);
      request.eventsSpared = v;
    }
    const f: StepFilter = { request };
    if (m.has('ttl')) f.ttl = { ms: this.duration(m.get('ttl')!, `${key}.ttl`), at: this.at(m.get('ttl')) };
    return f;
  }
}

/** How the runner will talk to the fleet: the TTLs it needs depend on it. */
export interface ScheduleOptions {
  /** --host/--hosts-file, which replace the plan's own hosts; empty: the plan's. */
  hosts: string[];
  concurrency: number;
  /** Deadline per host. */
  timeoutMs: number;
}

/**
 * Which hosts each step reaches (a prefix of the host list: earlier steps' hosts stay
 * in) and the TTL of what it sets: at least the longest the rest of the plan can take
 * from the step's start (its holds, the checks that may overrun them, and a deadline
 * per round of hosts for each later step and the cleanup), rounded up to a second.
 */
export function schedule(plan: ExperimentPlan, o: ScheduleOptions): Schedule {
  const hosts = o.hosts.length ? o.hosts : plan.hosts;
  if (!hosts.length) throw new PlanError(`${plan.file}: no host: give hosts or hostsFile in the plan, or --host/--hosts-file`);
  let reach = 0;
  const counts = plan.steps.map((s) => {
    const want = s.hosts === 'all' ? hosts.length : 'count' in s.hosts ? s.hosts.count : Math.ceil((s.hosts.percent * hosts.length) / 100);
    if (want > hosts.length) throw new PlanError(`${s.hostsAt}: step "${s.name}" wants ${want} hosts; the plan has ${hosts.length}`);
    reach = Math.max(reach, want);
    return reach;
  });
  const round = (n: number) => Math.ceil(n / o.concurrency) * (o.timeoutMs + 1000);
  const holdBound = (s: StepSpec) => s.holdMs + (plan.check ? 2 * plan.check.timeoutMs : 0);
  const cleanupMs = plan.cleanup === 'delete' ? round(counts[counts.length - 1]) : 0;
  const steps = plan.steps.map((s, k) => {
    let restMs = cleanupMs;
    for (let j = k; j < plan.steps.length; j++) restMs += round(counts[j]) + holdBound(plan.steps[j]);
    const ttlMs = Math.ceil(restMs / 1000) * 1000;
    const requests = s.filters.map((f) => {
      if (f.ttl && f.ttl.ms < ttlMs)
        throw new PlanError(
          `${f.ttl.at}: ttl ${formatDuration(f.ttl.ms)} of step "${s.name}" is shorter than what is left of the plan from that step ` +
            `(up to ${formatDuration(ttlMs)}: holds, checks, and rounds of hosts at --timeout ${formatDuration(o.timeoutMs)}); raise it, or leave ttl out to get exactly that`,
        );
      return { ...f.request, ttlMs: f.ttl?.ms ?? ttlMs };
    });
    return { index: k, name: s.name, hosts: hosts.slice(0, counts[k]), holdMs: s.holdMs, ttlMs, requests };
  });
  return { file: plan.file, hosts, check: plan.check, steps, cleanup: plan.cleanup };
}
