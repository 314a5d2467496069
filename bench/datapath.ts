// Per-I/O cost of the data path: fio 4k random reads (io_uring, QD 32) on a tmpfs-backed
// loop device, one case at a time, in interleaved rounds (every case once per round,
// the order rotated by one each round, so drift and position hit all cases alike).
// Two kinds of rounds, never mixed: IOPS rounds with kernel.bpf_stats_enabled off (the
// stats add their own cost to every run), and per-I/O-time rounds with it on, where
// the program's run_time_ns / run_cnt is the figure. Every iofilter case must attach to
// the hook of the empty program it is compared with; the hook is checked and recorded.
// Runs on the host (observe) and, through tests/vm/run, in the VM (see main below).
import { execFile, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { promisify } from 'node:util';
import * as native from '../native';
import { resolveConfig } from '../agent/config';
import { createLogger } from '../agent/log';
import { IoFilterCore } from '../agent/service';
import { createLoop, LoopDevice } from '../tests/helpers/loop';
import { machine, Machine } from './stats';

export interface CaseResult {
  key: string;
  name: string;
  /** The hook the case's program actually ran on (null: no program). */
  hook: string | null;
  iops: number[]; // one per IOPS round (stats off)
  nsPerIo: number[]; // one per time round (stats on): run_time_ns / run_cnt
  runs: number[]; // program runs per time round, to compare with fio's I/Os
  ios: number[]; // fio's I/Os per time round
  /** I/Os the case's filters counted as matched, per round (iofilter cases). */
  matched: number[];
  /** Kernel events delivered to user space, per round (iofilter cases). */
  events: number[];
}

export interface DatapathRun {
  machine: Machine;
  mode: native.Mode;
  hook: string;
  iopsRounds: number;
  timeRounds: number;
  seconds: number;
  fio: string[];
  cases: CaseResult[];
  /** Cases asked for that this kernel cannot run (an anchor whose facility it lacks), with why. */
  absent?: { name: string; why: string }[];
}

interface Ctx {
  disk: LoopDevice; // the device fio reads
  other: LoopDevice; // a second device, for "filters elsewhere only"
  pinDir: string;
  hook: string; // the empty program's hook: every iofilter case must attach here
}

interface Armed {
  progId: number;
  hook: string | null;
  target?: string; // what fio reads, when not ctx.disk (dm-flakey)
  /** After fio: what the case's filters counted (iofilter cases). */
  observed?: () => { matched: number; events: number };
  teardown(): Promise<void>;
}

interface Case {
  key: string;
  name: string;
  /** undefined: the case's filters must match nothing; true: they must match I/O. */
  matches?: boolean;
  setup(ctx: Ctx): Promise<Armed>;
}

/** fio reads 4 KiB blocks aligned to 8 KiB from 1 MiB on: only the even 4 KiB halves. */
const FIO_OFFSET_SECTORS = 2048;
const fioArgs = (target: string, seconds: number) => [
  '--name=b', `--filename=${target}`, '--direct=1', '--rw=randread', '--bs=4k', '--blockalign=8k', '--norandommap', '--ioengine=io_uring',
  '--iodepth=32', `--offset=${FIO_OFFSET_SECTORS * 512}`, `--runtime=${seconds}`, '--time_based', '--output-format=json',
];

const dev = (l: LoopDevice) => ({ major: l.major, minor: l.minor });
const spec = (l: LoopDevice, ranges: native.RangeSpec[], extra: Partial<native.FilterSpec> = {}): native.FilterSpec => ({
  device: dev(l), disk: dev(l), offset: 0n, size: BigInt(l.sizeSectors), ranges, eventsPerSecond: 0, ...extra,
});
const TTL_MS = 3_600_000; // the agent's default TTL
const elsewhere = (c: Ctx) => spec(c.other, [{ start: 0n, end: 7n, ops: ['write'] }]);

/**
 * `n` read ranges of 4 KiB in the odd 4 KiB halves, spread evenly over fio's whole
 * region: fio never overlaps one, yet every I/O lies inside the entry's span, so the
 * per-layer tree descent runs for each of them.
 */
export function interleaved(sizeSectors: number, n: number): native.RangeSpec[] {
  const span = sizeSectors - FIO_OFFSET_SECTORS;
  return Array.from({ length: n }, (_, i) => {
    const s = FIO_OFFSET_SECTORS + Math.floor((i * span) / n / 16) * 16 + 8;
    return { start: BigInt(s), end: BigInt(s + 7), ops: ['read' as const] };
  });
}

function iofilterCase(key: string, name: string, mode: native.Mode, filters: (c: Ctx) => native.FilterSpec[], matches?: boolean): Case {
  return {
    key,
    name,
    matches,
    async setup(ctx) {
      const lock = native.lock(ctx.pinDir);
      let f: native.Filterer;
      try {
        f = await native.attach({ mode, lock, selfTest: false });
      } catch (e) {
        lock.release();
        throw e;
      }
      const teardown = () => f.detach().finally(() => lock.release());
      if (f.state.hook !== ctx.hook) {
        await teardown();
        throw new Error(`case "${name}" attached to ${f.state.hook}, not to ${ctx.hook} where the empty program runs: the comparison would be unfair`);
      }
      let events = 0;
      f.startEvents((batch) => (events += batch.length)); // as the agent does: its reader always runs
      for (const s of filters(ctx)) f.putFilter(s);
      return {
        progId: f.state.progIds[0],
        hook: f.state.hook,
        observed: () => ({ matched: f.listFilters().reduce((n, x) => n + Number(x.matchedIos), 0), events }),
        teardown: async () => {
          f.stopEvents();
          await teardown();
        },
      };
    },
  };
}

export function cases(mode: native.Mode, opts: { anchors: boolean; only?: string[] }): Case[] {
  const m = mode;
  const all: Case[] = [
    { key: 'none', name: 'no program', setup: async () => ({ progId: 0, hook: null, teardown: async () => {} }) },
    // the agent's own start-up with --attach-on-demand and no filter: must attach nothing
    {
      key: 'ondemand',
      name: `iofilter ${m} on demand, idle (no filter)`,
      async setup(ctx) {
        const stateDir = `/tmp/iofilter-bench-state-${process.pid}`;
        const core = new IoFilterCore(resolveConfig({ pinDir: ctx.pinDir, attach: m, attachOnDemand: true, stateDir, logLevel: 'warn' }), createLogger('warn'));
        const close = () => {
          core.close();
          fs.rmSync(stateDir, { recursive: true, force: true });
        };
        await core.start();
        const st = await core.status();
        if (st.state?.attached || (fs.existsSync(ctx.pinDir) && fs.readdirSync(ctx.pinDir).length)) {
          close();
          throw new Error('on demand with no filter attached a program: the case would not measure what it says');
        }
        return { progId: 0, hook: null, teardown: async () => close() };
      },
    },
    {
      key: 'empty',
      name: 'empty program',
      async setup(ctx) {
        const e = await native.attachEmpty(ctx.hook);
        return { progId: e.progId, hook: ctx.hook, teardown: async () => e.close() };
      },
    },
    iofilterCase('nofilters', `iofilter ${m}, no filters at all`, m, () => []),
    iofilterCase('elsewhere', `iofilter ${m}, filter on another device only`, m, (c) => [elsewhere(c)]),
    iofilterCase('outside1', `iofilter ${m}, 1 range outside fio's region`, m, (c) => [elsewhere(c), spec(c.disk, [{ start: 0n, end: 7n, ops: ['read'] }])]),
    ...[1, 64, 512, 4096].map((n) =>
      iofilterCase(`r${n}`, `iofilter ${m}, ${n} interleaved non-matching`, m, (c) => [elsewhere(c), spec(c.disk, interleaved(c.disk.sizeSectors, n))]),
    ),
    // the agent gives every filter a TTL by default, and a TTL makes the program read the clock
    iofilterCase('r4096ttl', `iofilter ${m}, 4096 interleaved, with a TTL`, m, (c) => [elsewhere(c), spec(c.disk, interleaved(c.disk.sizeSectors, 4096), { ttlMs: TTL_MS })]),
  ];
  if (mode === 'observe') {
    const every = (c: Ctx, extra: Partial<native.FilterSpec>) => spec(c.disk, [], { wholeOps: ['read'], ...extra });
    all.push(iofilterCase('match', 'iofilter observe, matching, events off', m, (c) => [every(c, {})], true));
    all.push(iofilterCase('matchTtl', 'iofilter observe, matching, events off, TTL', m, (c) => [every(c, { ttlMs: TTL_MS })], true));
    all.push(iofilterCase('matchEv', 'iofilter observe, matching, events on (1000/s)', m, (c) => [every(c, { eventsPerSecond: undefined })], true));
  }
  if (opts.anchors) all.push(...anchors());
  return opts.only ? all.filter((c) => opts.only!.includes(c.key)) : all;
}

const FAIL_MAKE_REQUEST = '/sys/kernel/debug/fail_make_request';

/** Why a case cannot run on this kernel ('' when it can): distribution builds leave out fail_make_request. */
function absentWhy(c: Case): string {
  if (c.key === 'fmr0' && !fs.existsSync(FAIL_MAKE_REQUEST)) return `this kernel has no ${FAIL_MAKE_REQUEST} (CONFIG_FAIL_MAKE_REQUEST off, as in distribution builds)`;
  return '';
}

/** What users would otherwise reach for (VM only: the host kernel has neither). */
function anchors(): Case[] {
  return [
    {
      key: 'fmr0',
      name: 'fail_make_request armed, probability 0',
      async setup(ctx) {
        const fm = FAIL_MAKE_REQUEST;
        fs.writeFileSync(`${fm}/probability`, '0');
        fs.writeFileSync(`${fm}/times`, '-1');
        const knob = `/sys/block/${ctx.disk.path.slice(5)}/make-it-fail`;
        fs.writeFileSync(knob, '1');
        return { progId: 0, hook: null, teardown: async () => fs.writeFileSync(knob, '0') };
      },
    },
    {
      key: 'flakey',
      name: 'dm-flakey, up interval',
      async setup(ctx) {
        const name = `iofbench${process.pid}`;
        execFileSync('dmsetup', ['create', name, '--table', `0 ${ctx.disk.sizeSectors} flakey ${ctx.disk.path} 0 3600 0`]);
        execFileSync('dmsetup', ['mknodes', name]); // no udev in the VM to make /dev/mapper/<name>
        return { progId: 0, hook: null, target: `/dev/mapper/${name}`, teardown: async () => void execFileSync('dmsetup', ['remove', name]) };
      },
    },
  ];
}

function progStats(id: number): { ns: number; cnt: number } {
  const p = JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show', 'id', String(id)], { encoding: 'utf8' }));
  return { ns: p.run_time_ns ?? 0, cnt: p.run_cnt ?? 0 };
}

/** Asynchronous, so the event loop keeps delivering kernel events while fio runs. */
async function fio(target: string, seconds: number): Promise<{ iops: number; ios: number }> {
  const { stdout: out } = await promisify(execFile)('fio', fioArgs(target, seconds), { encoding: 'utf8', maxBuffer: 64 << 20 });
  const r = JSON.parse(out.slice(out.indexOf('{'))).jobs[0].read;
  return { iops: r.iops, ios: r.total_ios };
}

const STATS = '/proc/sys/kernel/bpf_stats_enabled';

export interface DatapathOptions {
  mode: native.Mode;
  anchors: boolean;
  only?: string[];
  iopsRounds: number;
  timeRounds: number;
  seconds: number;
  log: (s: string) => void;
}

export async function runDatapath(o: DatapathOptions): Promise<DatapathRun> {
  const cap = (await native.probe()).modes.find((x) => x.mode === o.mode);
  if (!cap?.available) throw new Error(`mode ${o.mode} is not available here: ${cap?.reason ?? 'unknown mode'}`);
  const statsBefore = fs.readFileSync(STATS, 'utf8').trim();
  const ctx: Ctx = { disk: createLoop(256), other: createLoop(16), pinDir: `/sys/fs/bpf/iofilter-bench-${process.pid}`, hook: cap.hook };
  const asked = cases(o.mode, { anchors: o.anchors, only: o.only });
  const absent = asked.filter(absentWhy).map((c) => ({ name: c.name, why: absentWhy(c) }));
  const list = asked.filter((c) => !absentWhy(c));
  const results: CaseResult[] = list.map((c) => ({ key: c.key, name: c.name, hook: null, iops: [], nsPerIo: [], runs: [], ios: [], matched: [], events: [] }));
  const once = async (i: number, timed: boolean, tag: string) => {
    const c = list[i];
    const r = results[i];
    const a = await c.setup(ctx);
    try {
      if (r.hook !== null && r.hook !== a.hook) throw new Error(`case "${c.name}" ran on ${a.hook} after ${r.hook}`);
      r.hook = a.hook;
      const before = timed ? progStats(a.progId) : null;
      const f = await fio(a.target ?? ctx.disk.path, o.seconds);
      if (before) {
        const after = progStats(a.progId);
        r.nsPerIo.push((after.ns - before.ns) / (after.cnt - before.cnt));
        r.runs.push(after.cnt - before.cnt);
        r.ios.push(f.ios);
      } else r.iops.push(f.iops);
      if (a.observed) {
        const seen = a.observed();
        r.matched.push(seen.matched);
        r.events.push(seen.events);
        if (c.matches && seen.matched === 0) throw new Error(`case "${c.name}": its filter matched no I/O`);
        if (!c.matches && seen.matched !== 0) throw new Error(`case "${c.name}": fio overlapped its ranges (${seen.matched} I/Os matched); the case would not measure what it says`);
      }
      o.log(`${tag} ${c.name}: ${before ? `${r.nsPerIo.at(-1)!.toFixed(1)} ns/IO` : `${Math.round(f.iops)} IOPS`}`);
    } finally {
      await a.teardown();
    }
  };
  try {
    fs.writeFileSync(STATS, '0');
    await fio(ctx.disk.path, 1); // warm up
    for (let round = 0; round < o.iopsRounds; round++)
      for (let k = 0; k < list.length; k++) await once((round + k) % list.length, false, `IOPS round ${round + 1}/${o.iopsRounds}`);
    fs.writeFileSync(STATS, '1');
    const withProg = list.map((c, i) => i).filter((i) => !['none', 'ondemand', 'fmr0', 'flakey'].includes(list[i].key));
    for (let round = 0; round < o.timeRounds; round++)
      for (let k = 0; k < withProg.length; k++) await once(withProg[(round + k) % withProg.length], true, `time round ${round + 1}/${o.timeRounds}`);
  } finally {
    fs.writeFileSync(STATS, statsBefore);
    ctx.disk.detach();
    ctx.other.detach();
  }
  return { machine: machine(), mode: o.mode, hook: ctx.hook, iopsRounds: o.iopsRounds, timeRounds: o.timeRounds, seconds: o.seconds, fio: fioArgs('DEV', o.seconds), cases: results, absent };
}

/** Entry point inside the VM: `node dist/bench/datapath.js '<DatapathOptions as JSON, without log>' OUT.json`. */
if (require.main === module) {
  const [json, out] = process.argv.slice(2);
  runDatapath({ ...JSON.parse(json), log: (s: string) => process.stderr.write(`  ${s}\n`) })
    .then((r) => fs.writeFileSync(out, JSON.stringify(r)))
    .catch((e) => {
      process.stderr.write(`datapath bench failed: ${e.stack ?? e}\n`);
      process.exit(1);
    });
}
