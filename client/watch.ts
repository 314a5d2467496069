// Watching many agents at once: one Watch stream per host, merged as events arrive
// (watchFleet), and `iofilterctl watch` on top of it: one `host:`-prefixed line (or
// JSON object) per event on stdout; losses, hosts that fail or drop, and the summary
// on stderr; Ctrl-C ends every stream and the exit code follows the usual bits.
import * as grpc from '@grpc/grpc-js';
import type { IoEvent__Output } from '../proto/gen/iofilter/v1/IoEvent';
import type { Lost__Output } from '../proto/gen/iofilter/v1/Lost';
import type { Outcome } from '../proto/gen/iofilter/v1/Outcome';
import type { WatchRequest } from '../proto/gen/iofilter/v1/WatchRequest';
import pc from 'picocolors';
import { outcomeFromWord, outcomeWord, wireOpWord } from '../proto/names';
import { checkDevice, parseCount } from './args';
import { UsageError } from './errors';
import { ClientOptions, credentials, IoFilterClient, MAX_TIMEOUT_MS } from './client';
import { classify, HostResult } from './fleet';
import { Colors, exitCode, hostLines, summary } from './render';

export interface WatchTally {
  events: number;
  /** Events lost, by reason ("slow client", "kernel rate limit", "ring buffer full"), as decimal strings. */
  lost: Record<string, string>;
  /** Who ended the stream: this side (Ctrl-C, abort) or the agent (status OK). */
  endedBy: 'client' | 'agent';
}

export interface WatchFleetOptions extends ClientOptions {
  /** Deadline for each agent to accept the stream, ms (the stream itself has none). Default 10 s. */
  timeoutMs?: number;
  /** Aborting ends every stream; those count as ended cleanly. */
  signal?: AbortSignal;
  onEvent(host: string, e: IoEvent__Output): void;
  onLost?(host: string, l: Lost__Output): void;
  /** Each host as its stream ends, in the order they end. */
  onHostEnd?(r: HostResult<WatchTally>): void;
}

/** Watches every host until each stream ends or `signal` aborts; one result per host, in the order given. */
export function watchFleet(hosts: readonly string[], req: WatchRequest, o: WatchFleetOptions): Promise<HostResult<WatchTally>[]> {
  const timeoutMs = Math.min(o.timeoutMs ?? 10_000, MAX_TIMEOUT_MS);
  const creds = credentials(o.tls);
  return Promise.all(hosts.map((h) => watchOne(h, req, o, timeoutMs, creds).then((r) => (o.onHostEnd?.(r), r))));
}

function watchOne(host: string, req: WatchRequest, o: WatchFleetOptions, timeoutMs: number, creds: grpc.ChannelCredentials): Promise<HostResult<WatchTally>> {
  const started = Date.now();
  const lost = new Map<string, bigint>();
  const tally = (endedBy: WatchTally['endedBy']): WatchTally => ({
    events,
    lost: Object.fromEntries([...lost].map(([k, v]) => [k, String(v)])),
    endedBy,
  });
  let events = 0;
  let client: IoFilterClient;
  try {
    client = new IoFilterClient(host, { ...o, timeoutMs }, creds);
  } catch (e) {
    return Promise.resolve({ host, ok: false, error: classify(e), ms: 0 });
  }
  return new Promise((resolve) => {
    const call = client.watch(req);
    let why: 'aborted' | 'timeout' | null = null;
    let accepted = false;
    const accept = () => {
      accepted = true;
      clearTimeout(timer);
    };
    const timer = setTimeout(() => {
      why = 'timeout';
      call.cancel();
    }, timeoutMs);
    const onAbort = () => {
      why ??= 'aborted';
      call.cancel();
    };
    o.signal?.addEventListener('abort', onAbort, { once: true });
    call.on('metadata', accept);
    call.on('data', (m: { io?: IoEvent__Output | null; lost?: Lost__Output | null }) => {
      accept();
      if (m.io) {
        events++;
        o.onEvent(host, m.io);
      } else if (m.lost) {
        lost.set(m.lost.reason, (lost.get(m.lost.reason) ?? 0n) + BigInt(m.lost.count));
        o.onLost?.(host, m.lost);
      }
    });
    call.on('error', () => undefined); // the 'status' event below says everything
    call.on('status', (s: grpc.StatusObject) => {
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      client.close();
      const ms = Date.now() - started;
      if (why === 'aborted' || s.code === grpc.status.OK) {
        resolve({ host, ok: true, value: tally(why === 'aborted' ? 'client' : 'agent'), ms });
      } else if (why === 'timeout') {
        resolve({ host, ok: false, error: { code: 'DEADLINE_EXCEEDED', message: `no answer within ${timeoutMs} ms`, kind: 'unreachable' }, value: tally('client'), ms });
      } else {
        const error = classify(s);
        if (accepted && error.kind === 'unreachable') error.message = `stream dropped after ${events} event(s): ${error.message}`;
        resolve({ host, ok: false, error, value: tally('agent'), ms });
      }
    });
    if (o.signal?.aborted) onAbort();
  });
}

/** The request `iofilterctl watch` options describe; bad values are usage errors. */
export function watchRequest(o: { device?: string; outcome?: string[]; filter?: string }): WatchRequest {
  const req: WatchRequest = {};
  if (o.device !== undefined) req.device = checkDevice(o.device);
  if (o.outcome?.length) {
    req.outcomes = o.outcome.map((w): Outcome => {
      const wire = outcomeFromWord(w);
      if (!wire) throw new UsageError(`bad --outcome "${w}": use failed, would-fail or spared`);
      return wire;
    });
  }
  if (o.filter !== undefined) {
    const id = parseCount(o.filter, '--filter', 1);
    if (typeof id !== 'number' || id > 0xffffffff) throw new UsageError(`bad --filter "${o.filter}": filter ids go up to 4294967295`);
    req.filterId = id;
  }
  return req;
}

/** "2024-05-01T12:00:00.123456Z" from nanoseconds since the epoch. */
export function formatTime(unixNs: string): string {
  const ns = BigInt(unixNs || '0');
  const us = String((ns / 1000n) % 1000n).padStart(3, '0');
  return new Date(Number(ns / 1_000_000n)).toISOString().replace('Z', `${us}Z`);
}

/** `host: time device sector+len op outcome pid comm` (sector in the device's own coordinates). */
export function eventLine(host: string, e: IoEvent__Output, c: Colors): string {
  const d = e.device;
  const dev = d?.name || (d ? `${d.major}:${d.minor}` : '?');
  const ops = e.ops.map(wireOpWord).join(',') || '-';
  const word = outcomeWord(e.outcome);
  const outcome = e.outcome === 'OUTCOME_FAILED' ? c.red(word) : e.outcome === 'OUTCOME_WOULD_FAIL' ? c.yellow(word) : c.dim(word);
  // comm comes from the kernel: keep one event on one line whatever it holds
  const comm = [...(e.comm || '?')].map((ch) => (ch.charCodeAt(0) <= 0x20 || ch.charCodeAt(0) === 0x7f ? '?' : ch)).join('');
  return `${c.bold(host)}: ${formatTime(e.timeUnixNs)} ${dev} ${e.deviceSector}+${e.nrSectors} ${ops} ${outcome} ${e.pid} ${comm}`;
}

export interface WatchIo {
  out: (s: string) => void;
  err: (s: string) => void;
  stdoutTty: boolean;
  /** Starts catching Ctrl-C; the signal aborts on it. Without it nothing interrupts the watch. */
  trapInterrupt?: () => AbortSignal;
}

/** `iofilterctl watch`: resolves the exit code once every stream has ended. */
export async function runWatch(
  hosts: string[],
  opts: { json: boolean; timeoutMs: number; tls?: { ca: Buffer; cert: Buffer; key: Buffer } },
  req: WatchRequest,
  io: WatchIo,
): Promise<number> {
  const c = pc.createColors(io.stdoutTty && !opts.json);
  const signal = io.trapInterrupt?.();
  const results = await watchFleet(hosts, req, {
    timeoutMs: opts.timeoutMs,
    tls: opts.tls,
    signal,
    onEvent: (host, e) => io.out((opts.json ? JSON.stringify({ host, ...e }) : eventLine(host, e, c)) + '\n'),
    onLost: (host, l) => io.err(`${host}: lost ${l.count} event(s): ${l.reason}\n`),
    onHostEnd: (r) => {
      if (!r.ok) for (const l of hostLines(r, () => [], pc.createColors(false))) io.err(l + '\n');
      else if (r.value?.endedBy === 'agent') io.err(`${r.host}: stream ended by the agent\n`);
    },
  });
  const events = results.reduce((n, r) => n + (r.value?.events ?? 0), 0);
  const lost = results.reduce((n, r) => n + Object.values(r.value?.lost ?? {}).reduce((a, v) => a + BigInt(v), 0n), 0n);
  io.err(`${summary(results)}; ${events} event(s), ${lost} lost (${hosts.length} host${hosts.length === 1 ? '' : 's'})\n`);
  return exitCode(results);
}
