// The fan-out engine: run one operation on many agents with bounded concurrency and a
// deadline per host; exactly one result per host, in the order hosts were given;
// never throws because a host failed.
import * as grpc from '@grpc/grpc-js';
import { ClientOptions, credentials, IoFilterClient, MAX_TIMEOUT_MS } from './client';

/** 'unreachable': the host gave no answer (refused, unresolvable, deadline). 'error': it answered with one. */
export type FailureKind = 'error' | 'unreachable';

export interface HostError {
  /** gRPC status name (e.g. NOT_FOUND, DEADLINE_EXCEEDED), or LOCAL for a failure on this side. */
  code: string;
  message: string;
  kind: FailureKind;
}

export interface HostResult<T> {
  /** The host exactly as it was passed in. */
  host: string;
  ok: boolean;
  value?: T;
  error?: HostError;
  /** Time spent on this host, ms. */
  ms: number;
}

export interface FleetOptions extends ClientOptions {
  /** Hosts worked on at once. Default DEFAULT_CONCURRENCY. */
  concurrency?: number;
  /** Deadline per host, ms (each RPC and the host as a whole). Default 10 s. */
  timeoutMs?: number;
  /** Called after each host finishes, in completion order (for progress bars). */
  onProgress?: (done: number, total: number, result: HostResult<unknown>) => void;
  /** Called with each host's result as it finishes, with the host's index in `hosts`. */
  onResult?: (index: number, result: HostResult<unknown>) => void;
  /**
   * false: the results resolved carry no `value` (the caller took each in onResult), so
   * the answers of 10,000 hosts are not all held at once. Default true.
   */
  keepValues?: boolean;
}

/**
 * Hosts worked on at once unless told (issue 25, bench/fanout.ts): each host in flight
 * costs the client about two descriptors, so 256 stays well under the common soft
 * RLIMIT_NOFILE of 1024, and at 256 in flight 10,000 hosts take under 10 s as long as
 * one host's calls take under 250 ms (a TLS handshake and a call across a region).
 */
export const DEFAULT_CONCURRENCY = 256;

/** Codes that mean "no answer": the host counts as unreachable. */
const NO_ANSWER = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED, grpc.status.CANCELLED]);

export function classify(e: unknown): HostError {
  const err = e as Partial<grpc.ServiceError> | undefined;
  if (typeof err?.code === 'number') {
    return {
      code: grpc.status[err.code] ?? String(err.code),
      // grpc-js ends connection errors with an empty "Resolution note: "; drop it
      message: (err.details || err.message || '').replace(/\s*Resolution note:\s*$/, ''),
      kind: NO_ANSWER.has(err.code) ? 'unreachable' : 'error',
    };
  }
  return { code: 'LOCAL', message: (e as Error)?.message ?? String(e), kind: 'error' };
}

/**
 * Runs `fn` against every host, at most `concurrency` at a time, and resolves one
 * result per host in the order given. Hosts: `host` (port 50051), `host:port`,
 * `[v6]:port`, `unix:/path`. A malformed host gets an error result, not a throw.
 */
export async function runFleet<T>(
  hosts: readonly string[],
  fn: (client: IoFilterClient, host: string) => Promise<T>,
  opts: FleetOptions = {},
): Promise<HostResult<T>[]> {
  const concurrency = Math.max(1, Math.floor(opts.concurrency ?? DEFAULT_CONCURRENCY));
  const timeoutMs = Math.min(opts.timeoutMs ?? 10_000, MAX_TIMEOUT_MS - 1000);
  const creds = credentials(opts.tls); // read certificates once, not per host
  const results: HostResult<T>[] = new Array(hosts.length);
  let next = 0;
  let done = 0;

  const one = async (host: string): Promise<HostResult<T>> => {
    const started = Date.now();
    let client: IoFilterClient | undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      client = new IoFilterClient(host, { ...opts, timeoutMs }, creds);
      // Each RPC carries its own deadline; this bounds the host as a whole when `fn`
      // makes several calls (grace so the RPC's own DEADLINE_EXCEEDED normally wins).
      const overall = new Promise<never>((_, reject) => {
        const details = `no answer within ${timeoutMs} ms`;
        timer = setTimeout(() => reject(Object.assign(new Error(details), { code: grpc.status.DEADLINE_EXCEEDED, details })), timeoutMs + 50);
      });
      const value = await Promise.race([fn(client, host), overall]);
      return { host, ok: true, value, ms: Date.now() - started };
    } catch (e) {
      return { host, ok: false, error: classify(e), ms: Date.now() - started };
    } finally {
      clearTimeout(timer);
      client?.close();
    }
  };

  // A fixed pool of workers pulling the next index: never more than `concurrency` in flight.
  const worker = async () => {
    while (next < hosts.length) {
      const i = next++;
      const r = await one(hosts[i]);
      done++;
      opts.onResult?.(i, r);
      opts.onProgress?.(done, hosts.length, r);
      results[i] = opts.keepValues === false ? { host: r.host, ok: r.ok, ...(r.error && { error: r.error }), ms: r.ms } : r;
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, hosts.length) }, worker));
  return results;
}
