// Where a SetFilter's time goes. Four views of the same work, on the same machine:
//  1. the agent under `node --cpu-prof` during a SetFilter burst (1-range, then 4096-range
//     filters, each in its own agent run), summarised by top self-time functions and by
//     component (grpc-js, protobufjs, agent code, native addon, GC);
//  2. the native putFilter alone, in this process, against the same pins (adopted once
//     the profiled agent has stopped and left them);
//  3. the agent's service layer alone (IoFilterCore.setFilter: validation, device
//     resolution, putFilter, the answer) in this process, without gRPC;
//  4. the protobuf work of one call: encoding and decoding the request and the answer,
//     and the interceptor's JSON summary of the request.
// End-to-end latencies come from control.ts; the breakdown sets them side by side.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { resolveConfig } from '../agent/config';
import { resolveDevice } from '../agent/devices';
import { summarize } from '../agent/server';
import { IoFilterCore } from '../agent/service';
import { toFilterSpec } from '../agent/validate';
import { compactRanges, IoFilterClient } from '../client';
import * as native from '../native';
import { loadProto, SERVICE_NAME } from '../proto';
import type { SetFilterRequest } from '../proto/gen/iofilter/v1/SetFilterRequest';
import type { SetFilterRequest__Output } from '../proto/gen/iofilter/v1/SetFilterRequest';
import { AGENT_MAIN } from '../tests/helpers/agent';
import { freePort } from '../tests/helpers/common';
import { createLoop, LoopDevice } from '../tests/helpers/loop';
import { manyRanges } from './control';
import { percentile } from './stats';

export interface Timing {
  what: string;
  ranges: number;
  calls: number;
  p50Ms: number;
  p99Ms: number;
}

export interface ProfileSummary {
  ranges: number;
  calls: number;
  wallMs: number;
  busyMs: number; // sampled time not idle
  byComponent: { component: string; ms: number; pctBusy: number }[];
  top: { fn: string; where: string; component: string; ms: number; pctBusy: number }[];
}

export interface ProfileResult {
  profiles: ProfileSummary[];
  timings: Timing[];
}

/** p50/p99 of `calls` calls of `fn`, after a tenth as many untimed (V8 compiles the path first). */
async function timeIt(what: string, ranges: number, calls: number, fn: () => unknown): Promise<Timing> {
  for (let i = 0; i < Math.max(3, calls / 10); i++) await fn();
  const lat: number[] = [];
  for (let i = 0; i < calls; i++) {
    const t = process.hrtime.bigint();
    await fn();
    lat.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return { what, ranges, calls, p50Ms: percentile(lat, 50), p99Ms: percentile(lat, 99) };
}

function component(url: string, fn: string): string {
  if (fn.startsWith('(')) return fn; // (garbage collector), (program), (idle), (root)
  if (url.includes('@grpc/grpc-js')) return 'grpc-js';
  if (url.includes('protobufjs') || url.includes('@grpc/proto-loader')) return 'protobufjs';
  if (url.includes('/pino') || url.includes('sonic-boom')) return 'pino';
  if (url.includes('/dist/agent/')) return 'agent';
  if (url.includes('/dist/native/')) return 'native wrapper';
  if (url.includes('/dist/')) return 'project (other)';
  if (url.startsWith('node:')) return 'node core';
  if (!url) return 'native code (addon, builtins)';
  return 'other';
}

/**
 * Self time per function and per component from a V8 .cpuprofile, counting only the
 * samples inside `window` (CLOCK_MONOTONIC microseconds, the clock of V8's timestamps
 * and of process.hrtime): the burst, without the agent's start-up.
 */
export function summarizeProfile(file: string, ranges: number, calls: number, window: [number, number]): ProfileSummary {
  const p = JSON.parse(fs.readFileSync(file, 'utf8')) as {
    nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
    startTime: number;
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(p.nodes.map((n) => [n.id, n.callFrame]));
  const self = new Map<string, { fn: string; where: string; component: string; us: number }>();
  const comp = new Map<string, number>();
  let busy = 0;
  let at = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    at += p.timeDeltas[i];
    if (at < window[0] || at > window[1]) continue;
    const cf = byId.get(p.samples[i])!;
    const us = p.timeDeltas[i + 1] ?? 0; // the time until the next sample
    const fn = cf.functionName || '(anonymous)';
    const where = cf.url ? `${path.basename(cf.url)}:${cf.lineNumber + 1}` : '';
    const c = component(cf.url, fn);
    const k = `${fn}@${where}`;
    const e = self.get(k) ?? { fn, where, component: c, us: 0 };
    e.us += us;
    self.set(k, e);
    comp.set(c, (comp.get(c) ?? 0) + us);
    if (fn !== '(idle)') busy += us;
  }
  const pct = (us: number) => Math.round((1000 * us) / busy) / 10;
  return {
    ranges,
    calls,
    wallMs: Math.round((window[1] - window[0]) / 1000),
    busyMs: Math.round(busy / 1000),
    byComponent: [...comp].filter(([c]) => c !== '(idle)').sort((a, b) => b[1] - a[1]).map(([c, us]) => ({ component: c, ms: Math.round(us / 1000), pctBusy: pct(us) })),
    top: [...self.values()].filter((e) => e.fn !== '(idle)').sort((a, b) => b.us - a.us).slice(0, 15)
      .map((e) => ({ fn: e.fn, where: e.where, component: e.component, ms: Math.round(e.us / 100) / 10, pctBusy: pct(e.us) })),
  };
}

const setReq = (disk: LoopDevice, ranges: number): SetFilterRequest =>
  ({ device: disk.path, ranges: ranges === 1 ? [{ start: 8, end: 15, ops: ['OP_WRITE'] }] : manyRanges(ranges), ttlMs: 600_000 });

/** One agent under --cpu-prof, one burst of SetFilter calls; leaves its pins (SIGTERM). */
async function profiledBurst(pinDir: string, disk: LoopDevice, ranges: number, calls: number): Promise<ProfileSummary> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iofilter-prof-'));
  const listen = `127.0.0.1:${await freePort()}`;
  const proc = spawn(process.execPath, ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-interval', '200', AGENT_MAIN,
    '--listen', listen, '--pin-dir', pinDir, '--attach', 'observe', '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
  const client = new IoFilterClient(listen, { timeoutMs: 30_000 });
  try {
    for (let tries = 0; ; tries++) {
      try {
        await client.status();
        break;
      } catch (e) {
        if (proc.exitCode !== null || tries > 300) throw new Error(`profiled agent did not start: ${(e as Error).message}\n${err}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const req = setReq(disk, ranges);
    const us = () => Number(process.hrtime.bigint() / 1000n);
    const from = us();
    for (let i = 0; i < calls; i++) await client.setFilter(req);
    const to = us();
    proc.kill('SIGTERM'); // graceful: the profile is written at exit, the pins stay
    if ((await exited) !== 0) throw new Error(`profiled agent exited with an error:\n${err}`);
    const prof = fs.readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    if (!prof) throw new Error(`no .cpuprofile written in ${dir}`);
    const summary = summarizeProfile(path.join(dir, prof), ranges, calls, [from, to]);
    if (summary.busyMs === 0) throw new Error('the profile has no samples inside the burst: are the clocks not the same?');
    return summary;
  } finally {
    client.close();
    if (proc.exitCode === null) proc.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function runProfile(opts: { calls: number; log: (s: string) => void }): Promise<ProfileResult> {
  const pinDir = `/sys/fs/bpf/iofilter-bench-prof-${process.pid}`;
  const small = createLoop(16);
  const big = createLoop(64);
  const n1 = opts.calls;
  const nBig = Math.max(20, Math.round(opts.calls / 10));
  const timings: Timing[] = [];
  const profiles: ProfileSummary[] = [];
  try {
    for (const [disk, ranges, calls] of [[small, 1, n1], [big, 4096, nBig]] as const) {
      opts.log(`cpu profile of the agent: ${calls} SetFilter calls with ${ranges} range(s)`);
      profiles.push(await profiledBurst(pinDir, disk, ranges, calls));
    }
    // 2. the native call alone, on the pins the agent left
    const lock = native.lock(pinDir);
    const f = await native.adopt(lock);
    if (!f) throw new Error(`no pins to adopt in ${pinDir}`);
    for (const [disk, ranges, calls] of [[small, 1, n1], [big, 4096, nBig]] as const) {
      const dev = resolveDevice(disk.path);
      const req = decode(setReq(disk, ranges));
      const policy = { maxRanges: 4096, ttl: { maxMs: 3_600_000, defaultMs: 3_600_000, allowNoTtl: false } };
      const spec = toFilterSpec(req, dev, policy);
      timings.push(await timeIt('native putFilter (same pins, in process)', ranges, calls, () => f.putFilter(spec)));
      timings.push(await timeIt('toFilterSpec (validation, JS)', ranges, calls, () => toFilterSpec(req, dev, policy)));
      if (ranges > 1) {
        const packed = decode(compactRanges(setReq(disk, ranges)));
        timings.push(await timeIt('toFilterSpec from packed_ranges (decode and validation)', ranges, calls, () => toFilterSpec(packed, dev, policy)));
      }
    }
    f.close();
    lock.release();
    // 3. the service layer without gRPC (it adopts the same pins)
    const core = new IoFilterCore(resolveConfig({ pinDir, attach: 'observe' }), pino({ level: 'silent' }));
    await core.start();
    const answers: Record<number, unknown> = {};
    for (const [disk, ranges, calls] of [[small, 1, n1], [big, 4096, nBig]] as const) {
      const req = decode(setReq(disk, ranges));
      timings.push(await timeIt('IoFilterCore.setFilter (agent without gRPC)', ranges, calls, async () => (answers[ranges] = await core.setFilter(req))));
    }
    timings.push(await timeIt('IoFilterCore.status (one 4096-range and one 1-range filter)', 0, n1, () => core.status()));
    // 4. protobuf and the interceptor's request summary, for the same messages
    const m = method('SetFilter');
    for (const ranges of [1, 4096]) {
      const req = setReq(ranges === 1 ? small : big, ranges);
      const wire = m.requestSerialize(req);
      const decoded = m.requestDeserialize(wire);
      const ans = m.responseSerialize(answers[ranges]);
      const calls = ranges === 1 ? n1 : nBig;
      timings.push(await timeIt(`request encode (client), ${wire.length} bytes`, ranges, calls, () => m.requestSerialize(req)));
      timings.push(await timeIt('request decode (agent)', ranges, calls, () => m.requestDeserialize(wire)));
      timings.push(await timeIt('JSON summary of the request (interceptor)', ranges, calls, () => summarize(decoded)));
      timings.push(await timeIt(`answer encode (agent), ${ans.length} bytes`, ranges, calls, () => m.responseSerialize(answers[ranges])));
      timings.push(await timeIt('answer decode (client)', ranges, calls, () => m.responseDeserialize(ans)));
      if (ranges > 1) {
        const packed = compactRanges(req);
        const pwire = m.requestSerialize(packed);
        const pdecoded = m.requestDeserialize(pwire);
        timings.push(await timeIt('packed: packRanges (client)', ranges, calls, () => compactRanges(req)));
        timings.push(await timeIt(`packed: request encode (client), ${pwire.length} bytes`, ranges, calls, () => m.requestSerialize(packed)));
        timings.push(await timeIt('packed: request decode (agent)', ranges, calls, () => m.requestDeserialize(pwire)));
        timings.push(await timeIt('packed: JSON summary of the request (interceptor)', ranges, calls, () => summarize(pdecoded)));
      }
    }
    await core.detach();
    core.close();
  } finally {
    small.detach();
    big.detach();
  }
  return { profiles, timings };
}

function method(name: string): grpc.MethodDefinition<unknown, unknown> {
  return (loadProto().def[SERVICE_NAME] as grpc.ServiceDefinition)[name] as grpc.MethodDefinition<unknown, unknown>;
}

/** A request as the agent's handler receives it: encoded and decoded by the service definition. */
function decode(req: SetFilterRequest): SetFilterRequest__Output {
  const m = method('SetFilter');
  return m.requestDeserialize(m.requestSerialize(req)) as SetFilterRequest__Output;
}
