// IoFilterClient: one agent, typed methods for every RPC, a deadline on every call.
import * as fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { loadProto } from '../proto';
import type { AttachState__Output } from '../proto/gen/iofilter/v1/AttachState';
import type { DeleteFilterRequest } from '../proto/gen/iofilter/v1/DeleteFilterRequest';
import type { ClearFiltersResponse__Output } from '../proto/gen/iofilter/v1/ClearFiltersResponse';
import type { DeleteFilterResponse__Output } from '../proto/gen/iofilter/v1/DeleteFilterResponse';
import type { DetachResponse__Output } from '../proto/gen/iofilter/v1/DetachResponse';
import type { Filter__Output } from '../proto/gen/iofilter/v1/Filter';
import type { IoFilterServiceClient } from '../proto/gen/iofilter/v1/IoFilterService';
import type { SetFilterRequest } from '../proto/gen/iofilter/v1/SetFilterRequest';
import type { SetFilterResponse__Output } from '../proto/gen/iofilter/v1/SetFilterResponse';
import type { WrapResponse__Output } from '../proto/gen/iofilter/v1/WrapResponse';
import type { UnwrapResponse__Output } from '../proto/gen/iofilter/v1/UnwrapResponse';
import type { StatusResponse__Output } from '../proto/gen/iofilter/v1/StatusResponse';
import type { WatchEvent__Output } from '../proto/gen/iofilter/v1/WatchEvent';
import type { WatchRequest } from '../proto/gen/iofilter/v1/WatchRequest';
import { AttachModeName, modeToWire } from '../proto/names';
import { packRanges } from '../proto/packed';
import { normalizeHost } from './hosts';

export interface TlsFiles {
  ca: string; // CA that signed the agent's certificate
  cert: string; // client certificate (its CN/SAN is the identity the agent maps to a role)
  key: string;
}

export interface ClientOptions {
  /** Deadline of each call, ms. Default 10 s. */
  timeoutMs?: number;
  /** mTLS: file paths or PEM buffers. Without it the channel is plaintext. */
  tls?: TlsFiles | { ca: Buffer; cert: Buffer; key: Buffer };
  /** TLS server name to verify, when it differs from the host in the address. */
  serverName?: string;
}

export type ViewName = 'basic' | 'full';
const VIEW_WIRE = { basic: 'FILTER_VIEW_BASIC', full: 'FILTER_VIEW_FULL' } as const;

/**
 * From this many ranges on, the CLI sends a filter's ranges as packed_ranges: one byte
 * string the agent decodes in a loop, instead of a Range message per range (issue 25).
 * An agent older than packed_ranges ignores the field, sees neither ranges nor
 * whole_device_ops, and refuses the call (INVALID_ARGUMENT), changing nothing.
 */
export const PACK_FROM = 64;

/** `req` with its ranges packed when there are at least PACK_FROM of them; otherwise `req` itself. */
export function compactRanges(req: SetFilterRequest): SetFilterRequest {
  if (!req.ranges || req.ranges.length < PACK_FROM) return req;
  // a fault kind that acts on its own ops (delay, drop-writes, ...) sends none: a packed record needs one
  if (req.ranges.some((r) => !r.ops?.length)) return req;
  return { ...req, ranges: [], packedRanges: packRanges(req.ranges) };
}

export function credentials(tls?: ClientOptions['tls']): grpc.ChannelCredentials {
  if (!tls) return grpc.credentials.createInsecure();
  const read = (v: string | Buffer) => (Buffer.isBuffer(v) ? v : fs.readFileSync(v));
  return grpc.credentials.createSsl(read(tls.ca), read(tls.key), read(tls.cert));
}

/** Largest delay setTimeout honours; longer ones fire at once. Deadlines are clamped to it. */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

export class IoFilterClient {
  /** The normalised address: host:port, [v6]:port or unix:/path. */
  readonly address: string;
  private readonly stub: IoFilterServiceClient;
  private readonly timeoutMs: number;

  /**
   * `address`: `host` (port 50051), `host:port`, `[v6]:port` or `unix:/path`.
   * `channelCreds` overrides `opts.tls` (e.g. credentials shared by many clients).
   */
  constructor(address: string, opts: ClientOptions = {}, channelCreds?: grpc.ChannelCredentials) {
    this.address = normalizeHost(address);
    this.timeoutMs = Math.min(opts.timeoutMs ?? 10_000, MAX_TIMEOUT_MS);
    const { grpcObj } = loadProto();
    // No retries: a host that does not answer should be reported, not retried into the deadline.
    // No channelz, and a subchannel pool of its own: the global pool keeps an entry per
    // target for the life of the process and scans them all, and channelz registers
    // every channel: together a quarter to a third of the client's CPU per host (1,000
    // hosts on loopback, bench/fanout.ts).
    const options: grpc.ChannelOptions = { 'grpc.enable_retries': 0, 'grpc.enable_channelz': 0, 'grpc.use_local_subchannel_pool': 1 };
    if (opts.serverName) options['grpc.ssl_target_name_override'] = opts.serverName;
    this.stub = new grpcObj.iofilter.v1.IoFilterService(this.address, channelCreds ?? credentials(opts.tls), options);
  }

  private opts(): grpc.CallOptions {
    return { deadline: Date.now() + this.timeoutMs };
  }

  /** Turns one callback-style unary call into a promise. */
  private unary<T>(start: (cb: grpc.requestCallback<T>) => void): Promise<T> {
    return new Promise((resolve, reject) => start((err, res) => (err ? reject(err) : resolve(res as T))));
  }

  /** Loads and attaches the program; idempotent (an attached agent keeps its mode). */
  async attach(mode: AttachModeName = 'auto'): Promise<AttachState__Output> {
    const req = { mode: modeToWire(mode) };
    const r = await this.unary<{ state: AttachState__Output | null }>((cb) => this.stub.Attach(req, this.opts(), cb));
    return r.state!;
  }
  /** Detaches the program: every filter is gone, pins removed. */
  detach(): Promise<DetachResponse__Output> {
    return this.unary((cb) => this.stub.Detach({}, this.opts(), cb));
  }
  /**
   * Replaces the filter of (device, cgroup scope) atomically; resolves the filter as the
   * agent stored it: with its per-range list only with view 'full' (or req.view FULL).
   */
  async setFilter(req: SetFilterRequest, view?: ViewName): Promise<Filter__Output> {
    return (await this.setFilterResponse(req, view)).filter!;
  }
  /** setFilter, with the agent's warnings (e.g. a cgroup whose I/O the filter may not see). */
  setFilterResponse(req: SetFilterRequest, view?: ViewName): Promise<SetFilterResponse__Output> {
    const wire = view ? { ...req, view: VIEW_WIRE[view] } : req;
    return this.unary((cb) => this.stub.SetFilter(wire, this.opts(), cb));
  }
  /** A device ("MAJ:MIN" or /dev path: its unscoped filter), or a request with a cgroup scope, all_scopes or a filter id. */
  deleteFilter(target: string | DeleteFilterRequest): Promise<DeleteFilterResponse__Output> {
    const req = typeof target === 'string' ? { device: target } : target;
    return this.unary((cb) => this.stub.DeleteFilter(req, this.opts(), cb));
  }
  /** Deletes every filter on the host in one call (the program stays attached); idempotent. */
  clearFilters(): Promise<ClearFiltersResponse__Output> {
    return this.unary((cb) => this.stub.ClearFilters({}, this.opts(), cb));
  }
  /** Creates /dev/mapper/iofilter-NAME over the whole of `device` (dm backend on any kernel). */
  wrap(device: string, name: string): Promise<WrapResponse__Output> {
    return this.unary((cb) => this.stub.Wrap({ device, name }, this.opts(), cb));
  }
  /** Removes a device wrap created; existed false when there was none. */
  unwrap(name: string): Promise<UnwrapResponse__Output> {
    return this.unary((cb) => this.stub.Unwrap({ name }, this.opts(), cb));
  }
  /** `view`: 'full' (every range with its counters; the agent's default) or 'basic' (no per-range list). */
  status(view?: ViewName): Promise<StatusResponse__Output> {
    const req = view ? { view: VIEW_WIRE[view] } : {};
    return this.unary((cb) => this.stub.Status(req, this.opts(), cb));
  }
  /**
   * Live events of the I/O the filters match. No deadline: the stream lasts until
   * cancel() or the agent ends it. Its 'metadata' event means the agent accepted it.
   */
  watch(req: WatchRequest = {}): grpc.ClientReadableStream<WatchEvent__Output> {
    return this.stub.Watch(req);
  }
  close(): void {
    this.stub.close();
  }
}
