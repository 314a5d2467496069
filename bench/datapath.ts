// Per-I/O cost of the data path: fio 4k random reads (io_uring, QD 32) on a tmpfs-backed
// loop device, with cases interleaved round by round (A B C ... A B C ...) so drift hits
// all alike. Reports IOPS, the ratio to "no program" and the program's own run time per
// I/O from kernel.bpf_stats_enabled. Runs on the host (observe) and, through
// tests/vm/run, in the VM (fmod_ret, kprobe, observe, and the anchors users would
// otherwise reach for: fail_make_request armed at probability 0, dm-flakey while up).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as native from '../native';
import { createLoop, LoopDevice } from '../tests/helpers/loop';

export interface CaseResult {
  name: string;
  iops: number[]; // one per round
  nsPerIo: number[]; // program run time per invocation, per round (empty if no program)
}

interface Ctx {
  disk: LoopDevice; // the device fio reads
  other: LoopDevice; // a second device, for "filters elsewhere only"
  pinDir: string;
}

interface Case {
  name: string;
  /** Sets the case up; returns the prog id to read stats from (or 0), the fio target and a teardown. */
  setup(ctx: Ctx): Promise<{ progId: number; target?: string; teardown: () => Promise<void> }>;
}

const dev = (l: { major: number; minor: number }) => ({ major: l.major, minor: l.minor });
const whole = (l: LoopDevice) => ({ device: dev(l), disk: dev(l), offset: 0n, size: BigInt(l.sizeSectors) });

/** fio reads from 1 MiB on; "non-matching" ranges sit in the first MiB, write-only, so every one is scanned. */
const FIO_OFFSET_SECTORS = 2048;

function iofilterCase(name: string, mode: native.AttachMode, filters: (ctx: Ctx) => native.FilterSpec[]): Case {
  return {
    name,
    async setup(ctx) {
      const lock = native.lock(ctx.pinDir);
      const f = await native.attach({ mode, lock });
      for (const spec of filters(ctx)) f.putFilter(spec);
      return { progId: f.state.progIds[0], teardown: () => f.detach().finally(() => lock.release()) };
    },
  };
}

export function cases(mode: native.Mode, hook: string, anchors: boolean): Case[] {
  const out: Case[] = [
    { name: 'no program', setup: async () => ({ progId: 0, teardown: async () => {} }) },
    {
      name: `empty program (${hook})`,
      async setup() {
        const e = await native.attachEmpty(hook);
        return { progId: e.progId, teardown: async () => e.close() };
      },
    },
    iofilterCase(`iofilter ${mode}, no filters at all`, mode, () => []),
    iofilterCase(`iofilter ${mode}, filter on another device only`, mode, (c) => [{ ...whole(c.other), ranges: [{ start: 0n, end: 7n, ops: ['write'] }] }]),
    iofilterCase(`iofilter ${mode}, 1 non-matching range`, mode, (c) => [{ ...whole(c.disk), ranges: [{ start: 0n, end: 7n, ops: ['write'] }] }]),
    iofilterCase(`iofilter ${mode}, ${native.limits().maxRanges} non-matching ranges`, mode, (c) => [
      { ...whole(c.disk), ranges: Array.from({ length: native.limits().maxRanges }, (_, i) => ({ start: BigInt(i * 16), end: BigInt(i * 16 + 7), ops: ['write' as const] })) },
    ]),
  ];
  if (mode === 'observe')
    out.push(iofilterCase('iofilter observe, matching filter (every I/O counted)', mode, (c) => [{ ...whole(c.disk), ranges: [], wholeOps: ['read'] }]));
  if (anchors) {
    out.push({
      name: 'fail_make_request armed, probability 0',
      async setup(ctx) {
        const fm = '/sys/kernel/debug/fail_make_request';
        fs.writeFileSync(`${fm}/probability`, '0');
        fs.writeFileSync(`${fm}/times`, '-1');
        const knob = `/sys/block/${ctx.disk.path.slice(5)}/make-it-fail`;
        fs.writeFileSync(knob, '1');
        return { progId: 0, teardown: async () => fs.writeFileSync(knob, '0') };
      },
    });
    out.push({
      name: 'dm-flakey, up interval',
      async setup(ctx) {
        const name = `iofbench${process.pid}`;
        execFileSync('dmsetup', ['create', name, '--table', `0 ${ctx.disk.sizeSectors} flakey ${ctx.disk.path} 0 3600 0`]);
        execFileSync('dmsetup', ['mknodes', name]); // no udev in the VM to make /dev/mapper/<name>
        return { progId: 0, target: `/dev/mapper/${name}`, teardown: async () => void execFileSync('dmsetup', ['remove', name]) };
      },
    });
  }
  return out;
}

function progStats(id: number): { runTimeNs: number; runCnt: number } {
  if (!id) return { runTimeNs: 0, runCnt: 0 };
  const p = JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show', 'id', String(id)], { encoding: 'utf8' }));
  return { runTimeNs: p.run_time_ns ?? 0, runCnt: p.run_cnt ?? 0 };
}

function fio(target: string, seconds: number): number {
  const out = execFileSync(
    'fio',
    ['--name=b', `--filename=${target}`, '--direct=1', '--rw=randread', '--bs=4k', '--ioengine=io_uring', '--iodepth=32',
      `--offset=${FIO_OFFSET_SECTORS * 512}`, `--runtime=${seconds}`, '--time_based', '--output-format=json'],
    { encoding: 'utf8', maxBuffer: 64 << 20 },
  );
  return JSON.parse(out.slice(out.indexOf('{'))).jobs[0].read.iops;
}

export async function runDatapath(opts: { mode: native.Mode; hook: string; anchors: boolean; rounds: number; seconds: number; log: (s: string) => void }): Promise<CaseResult[]> {
  const stats = '/proc/sys/kernel/bpf_stats_enabled';
  const statsBefore = fs.readFileSync(stats, 'utf8').trim();
  fs.writeFileSync(stats, '1');
  const ctx: Ctx = { disk: createLoop(256), other: createLoop(16), pinDir: `/sys/fs/bpf/iofilter-bench-${process.pid}` };
  const list = cases(opts.mode, opts.hook, opts.anchors);
  const results: CaseResult[] = list.map((c) => ({ name: c.name, iops: [], nsPerIo: [] }));
  try {
    fio(ctx.disk.path, 1); // warm up
    for (let round = 0; round < opts.rounds; round++) {
      for (let i = 0; i < list.length; i++) {
        const s = await list[i].setup(ctx);
        try {
          const a = progStats(s.progId);
          const iops = fio(s.target ?? ctx.disk.path, opts.seconds);
          const b = progStats(s.progId);
          results[i].iops.push(iops);
          if (s.progId && b.runCnt > a.runCnt) results[i].nsPerIo.push((b.runTimeNs - a.runTimeNs) / (b.runCnt - a.runCnt));
          opts.log(`round ${round + 1}/${opts.rounds} ${list[i].name}: ${Math.round(iops)} IOPS`);
        } finally {
          await s.teardown();
        }
      }
    }
  } finally {
    fs.writeFileSync(stats, statsBefore);
    ctx.disk.detach();
    ctx.other.detach();
  }
  return results;
}

/** Entry point inside the VM: `node dist/bench/datapath.js MODE HOOK ROUNDS SECONDS OUT.json`. */
if (require.main === module) {
  const [mode, hook, rounds, seconds, out] = process.argv.slice(2);
  runDatapath({ mode: mode as native.Mode, hook, anchors: true, rounds: Number(rounds), seconds: Number(seconds), log: (s) => process.stderr.write(s + '\n') })
    .then((r) => fs.writeFileSync(out, JSON.stringify(r)))
    .catch((e) => {
      process.stderr.write(`datapath bench failed: ${e.stack ?? e}\n`);
      process.exit(1);
    });
}
