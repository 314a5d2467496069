// The fan-out engine: run one operation on many agents with bounded concurrency and a
// deadline per host; exactly one result per host, in the order hosts were given;
// never throws because a host failed.
import * as grpc from '@grpc/grpc-js';
import { ClientOptions, credentials, IoFilterClient } from './client';

export type Outcome = 'ok' | 'error' | 'unreachable';

export interface HostResult<T> {
  host: string;
  outcome: Outcome;
  value?: T;
  /** gRPC status name (e.g. NOT_FOUND) and the agent's message. */
  error?: { code: string; message: string };
  ms: number;
}

export interface FleetOptions extends ClientOptions {
  /** Hosts worked on at once. Default 64. */
  concurrency?: number;
  /** Called after each host finishes (for progress bars). */
  onResult?: (r: HostResult<unknown>, done: number, total: number) => void;
}

/** Codes that mean "no answer": the host counts as unreachable. */
const NO_ANSWER = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED, grpc.status.CANCELLED]);

export function classify(e: unknown): { outcome: Outcome; code: string; message: string } {
  const err = e as Partial<grpc.ServiceError>;
  if (typeof err?.code === 'number') {
    return {
      outcome: NO_ANSWER.has(err.code) ? 'unreachable' : 'error',
      code: grpc.status[err.code] ?? String(err.code),
      message: err.details || err.message || '',
    };
  }
  return { outcome: 'error', code: 'LOCAL', message: (e as Error)?.message ?? String(e) };
}

export async function runFleet<T>(
  hosts: string[],
  fn: (client: IoFilterClient, host: string) => Promise<T>,
  opts: FleetOptions = {},
): Promise<HostResult<T>[]> {
  const concurrency = Math.max(1, Math.floor(opts.concurrency ?? 64));
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const creds = credentials(opts.tls); // read certificates once, not per host
  const results: HostResult<T>[] = new Array(hosts.length);
  let next = 0;
  let done = 0;

  const one = async (host: string): Promise<HostResult<T>> => {
    const started = Date.now();
    const client = new IoFilterClient(host, { ...opts, timeoutMs }, creds);
    let timer: NodeJS.Timeout | undefined;
    try {
      // the per-call deadline bounds each RPC; this bounds the host as a whole
      const overall = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: grpc.status.DEADLINE_EXCEEDED, details: `no answer within ${timeoutMs} ms` })), timeoutMs + 50);
      });
      const value = await Promise.race([fn(client, host), overall]);
      return { host, outcome: 'ok', value, ms: Date.now() - started };
    } catch (e) {
      const c = classify(e);
      return { host, outcome: c.outcome, error: { code: c.code, message: c.message }, ms: Date.now() - started };
    } finally {
      clearTimeout(timer);
      client.close();
    }
  };

  const worker = async () => {
    while (next < hosts.length) {
      const i = next++;
      results[i] = await one(hosts[i]);
      done++;
      opts.onResult?.(results[i], done, hosts.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, hosts.length) }, worker));
  return results;
}
