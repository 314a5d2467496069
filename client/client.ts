// IoFilterClient: one agent, typed methods for every RPC, a deadline on every call.
import * as fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { loadProto } from '../proto';
import type { AttachState__Output } from '../proto/gen/iofilter/v1/AttachState';
import type { DeleteFilterResponse__Output } from '../proto/gen/iofilter/v1/DeleteFilterResponse';
import type { DetachResponse__Output } from '../proto/gen/iofilter/v1/DetachResponse';
import type { Filter__Output } from '../proto/gen/iofilter/v1/Filter';
import type { IoFilterServiceClient } from '../proto/gen/iofilter/v1/IoFilterService';
import type { Mode } from '../proto/gen/iofilter/v1/Mode';
import type { SetFilterRequest } from '../proto/gen/iofilter/v1/SetFilterRequest';
import type { StatusResponse__Output } from '../proto/gen/iofilter/v1/StatusResponse';

export interface TlsFiles {
  ca: string; // CA that signed the agent's certificate
  cert: string; // client certificate (its CN/SAN is the identity the agent maps to a role)
  key: string;
}

export interface ClientOptions {
  /** Deadline of each call, ms. Default 10 s. */
  timeoutMs?: number;
  tls?: TlsFiles | { ca: Buffer; cert: Buffer; key: Buffer };
  /** TLS server name to verify, when it differs from the host in the address. */
  serverName?: string;
}

export type AttachModeName = 'auto' | 'fmod_ret' | 'kprobe' | 'observe';

export function credentials(tls?: ClientOptions['tls']): grpc.ChannelCredentials {
  if (!tls) return grpc.credentials.createInsecure();
  const read = (v: string | Buffer) => (Buffer.isBuffer(v) ? v : fs.readFileSync(v));
  return grpc.credentials.createSsl(read(tls.ca), read(tls.key), read(tls.cert));
}

export class IoFilterClient {
  readonly address: string;
  private readonly stub: IoFilterServiceClient;
  private readonly timeoutMs: number;

  /** `address`: host:port, [v6]:port or unix:/path. */
  constructor(address: string, opts: ClientOptions = {}, channelCreds?: grpc.ChannelCredentials) {
    this.address = address;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    const { grpcObj } = loadProto();
    const options: grpc.ChannelOptions = { 'grpc.enable_retries': 0 };
    if (opts.serverName) options['grpc.ssl_target_name_override'] = opts.serverName;
    this.stub = new grpcObj.iofilter.v1.IoFilterService(address, channelCreds ?? credentials(opts.tls), options);
  }

  private call<Res>(method: string, req: object): Promise<Res> {
    const deadline = Date.now() + this.timeoutMs;
    return new Promise((resolve, reject) => {
      (this.stub as unknown as Record<string, Function>)[method](req, { deadline }, (err: grpc.ServiceError | null, res: Res) =>
        err ? reject(err) : resolve(res),
      );
    });
  }

  async attach(mode: AttachModeName = 'auto'): Promise<AttachState__Output> {
    const r = await this.call<{ state: AttachState__Output }>('Attach', { mode: `MODE_${mode.toUpperCase()}` as Mode });
    return r.state;
  }
  detach(): Promise<DetachResponse__Output> {
    return this.call('Detach', {});
  }
  async setFilter(req: SetFilterRequest): Promise<Filter__Output> {
    const r = await this.call<{ filter: Filter__Output }>('SetFilter', req);
    return r.filter;
  }
  deleteFilter(device: string): Promise<DeleteFilterResponse__Output> {
    return this.call('DeleteFilter', { device });
  }
  status(): Promise<StatusResponse__Output> {
    return this.call('Status', {});
  }
  close(): void {
    this.stub.close();
  }
}
