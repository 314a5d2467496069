// The gRPC server: IoFilterService over IoFilterCore, the standard health service,
// server reflection, and one interceptor that authenticates, authorises, logs one
// line per RPC and writes the audit trail. createAgent() is what main.ts and the
// tests run.
import * as fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import { loadProto, SERVICE_NAME } from '../proto';
import type { IoFilterServiceHandlers } from '../proto/gen/iofilter/v1/IoFilterService';
import type { AgentConfig } from './config';
import { RpcError } from './errors';
import type { Logger } from './log';
import { AuditLog, Authenticator, checkListen, MUTATIONS, serverCredentials } from './security';
import type { CgroupResolver } from './cgroup';
import { IoFilterCore, KernelApi } from './service';

export interface Agent {
  core: IoFilterCore;
  server: grpc.Server;
  /** The bound address (with the real port when 0 was asked for). */
  address: string;
  /** Graceful stop: tryShutdown, forceShutdown after `graceMs`; pinned filters stay. */
  stop(graceMs?: number): Promise<void>;
}

function toStatus(e: unknown): Partial<grpc.StatusObject> {
  if (e instanceof RpcError) return { code: e.code, details: e.message };
  return { code: grpc.status.INTERNAL, details: (e as Error)?.message ?? String(e) };
}

function unary<Req, Res>(fn: (req: Req) => Promise<Res>) {
  return (call: grpc.ServerUnaryCall<Req, Res>, cb: grpc.sendUnaryData<Res>) => {
    let p: Promise<Res>;
    try {
      p = fn(call.request);
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then((r) => cb(null, r), (e) => cb(toStatus(e)));
  };
}

/** Requests in the audit trail and logs: bounded, so a hostile request cannot flood them. */
function summarize(msg: unknown): unknown {
  const s = JSON.stringify(msg, (_k, v) => (typeof v === 'bigint' ? String(v) : v));
  return s && s.length > 2048 ? `${s.slice(0, 2048)}... (${s.length} chars)` : msg;
}

function interceptor(auth: Authenticator, audit: AuditLog, log: Logger): grpc.ServerInterceptor {
  return (desc, call) => {
    const method = desc.path.split('/').pop() ?? desc.path;
    const started = process.hrtime.bigint();
    const caller = auth.identify(call);
    let request: unknown;
    const finish = (code: grpc.status, details: string) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const line = { rpc: method, peer: caller.peer, identity: caller.identity, code: grpc.status[code], ms: Math.round(ms * 100) / 100 };
      if (code === grpc.status.OK) log.info(line, 'rpc');
      else log.warn({ ...line, details }, 'rpc');
      if (MUTATIONS.has(method)) {
        const entry = { ...line, request: summarize(request), result: code === grpc.status.OK ? 'ok' : 'error', details: code === grpc.status.OK ? undefined : details };
        audit.write(entry);
        log.info({ audit: entry }, 'audit');
      }
    };
    return new grpc.ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMessage: (msg, nextMsg) => {
            request = msg;
            const refusal = auth.authorize(caller, method);
            if (refusal) {
              finish(refusal.code, refusal.details);
              call.sendStatus({ code: refusal.code, details: refusal.details, metadata: new grpc.Metadata() });
              return;
            }
            nextMsg(msg);
          },
        }),
      sendStatus: (status, next) => {
        finish(status.code, status.details);
        next(status);
      },
    });
  };
}

export async function createAgent(cfg: AgentConfig, log: Logger, kernel?: KernelApi, sysfs?: string, cgroups?: CgroupResolver): Promise<Agent> {
  const warning = checkListen(cfg);
  if (warning) log.warn({ listen: cfg.listen }, warning);
  const creds = serverCredentials(cfg);
  const auth = new Authenticator(cfg);
  const audit = new AuditLog(cfg.auditLog);
  const ownFiles = [__dirname, process.execPath, ...(cfg.auditLog ? [cfg.auditLog] : [])];
  const core = new IoFilterCore(cfg, log, kernel, ownFiles, sysfs, cgroups);
  await core.start();

  const server = new grpc.Server({
    interceptors: [interceptor(auth, audit, log)],
    'grpc.max_receive_message_length': cfg.maxMessageBytes,
    'grpc.max_concurrent_streams': 256,
  });
  const { def, grpcObj } = loadProto();
  const handlers: IoFilterServiceHandlers = {
    Attach: unary(async (req) => ({ state: await core.attach(req) })),
    Detach: unary(() => core.detach()),
    SetFilter: unary((req) => core.setFilter(req)),
    DeleteFilter: unary((req) => core.deleteFilter(req)),
    Status: unary(() => core.status()),
    ClearFilters: unary(() => core.clearFilters()),
    Watch: (call) => call.destroy(new RpcError(grpc.status.UNIMPLEMENTED, 'Watch is not implemented yet')),
  };
  server.addService(grpcObj.iofilter.v1.IoFilterService.service, handlers);
  new HealthImplementation({ '': 'SERVING', [SERVICE_NAME]: 'SERVING' }).addToServer(server);
  new ReflectionService(def).addToServer(server);

  if (cfg.listen.startsWith('unix:')) {
    const p = cfg.listen.slice(5).replace(/^\/\//, '');
    if (fs.existsSync(p) && fs.statSync(p).isSocket()) fs.unlinkSync(p); // stale socket of an earlier run
  }
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(cfg.listen, creds, (err, port) => (err ? reject(err) : resolve(port))),
  );
  let address = cfg.listen;
  if (cfg.listen.startsWith('unix:')) {
    fs.chmodSync(cfg.listen.slice(5).replace(/^\/\//, ''), 0o600); // root only: the socket is the authentication
  } else {
    address = cfg.listen.replace(/:\d+$/, `:${port}`);
  }
  log.info({ address, tls: !!cfg.tls, pinDir: cfg.pinDir }, 'serving');

  const stop = async (graceMs = 5000) => {
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        log.warn({ graceMs }, 'calls still running after the grace period: forcing shutdown');
        server.forceShutdown();
        resolve();
      }, graceMs);
      server.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
    const left = core.close();
    audit.close();
    log.info({ filters: left, pinDir: cfg.pinDir }, left ? `stopped; ${left} pinned filter(s) stay in force (kernel-enforced TTLs still apply)` : 'stopped; no filters in force');
  };
  return { core, server, address, stop };
}
