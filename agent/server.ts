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
import { EventHub } from './events';
import { AgentMetrics, MetricsServer, serveMetrics } from './metrics';
import { DeviceNames, nativeEventSource, serveWatch, statusDrops, toIoEvent } from './watch';

export interface Agent {
  core: IoFilterCore;
  server: grpc.Server;
  /** The bound address (with the real port when 0 was asked for). */
  address: string;
  /** Fans kernel events out to Watch streams. */
  hub: EventHub;
  /** The bound /metrics address, when metricsListen is set. */
  metricsAddress?: string;
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

/**
 * Requests in the audit trail and logs: bounded, so a hostile request cannot flood them.
 * Long arrays are cut before stringifying, so a 4096-range request costs what a short one does.
 */
export function summarize(msg: unknown): unknown {
  // bytes (packed_ranges) by their length: Buffer.toJSON would spell out every byte first
  if (msg && typeof msg === 'object' && Object.values(msg).some((v) => v instanceof Uint8Array))
    msg = Object.fromEntries(Object.entries(msg).map(([k, v]) => [k, v instanceof Uint8Array ? `${v.length} bytes` : v]));
  const s = JSON.stringify(msg, (_k, v) =>
    typeof v === 'bigint' ? String(v) : Array.isArray(v) && v.length > SUMMARY_ITEMS ? [...v.slice(0, SUMMARY_ITEMS), `... ${v.length - SUMMARY_ITEMS} more`] : v,
  );
  if (s === undefined) return msg;
  return s.length > 2048 ? `${s.slice(0, 2048)}... (${s.length} chars)` : JSON.parse(s);
}
const SUMMARY_ITEMS = 8;

type RpcObserver = (method: string, code: string, seconds: number) => void;

function interceptor(auth: Authenticator, audit: AuditLog, log: Logger, observe?: RpcObserver): grpc.ServerInterceptor {
  return (desc, call) => {
    const method = desc.path.split('/').pop() ?? desc.path;
    const started = process.hrtime.bigint();
    const caller = auth.identify(call);
    let request: unknown;
    let finished = false;
    const finish = (code: grpc.status, details: string) => {
      if (finished) return; // a cancelled stream may still try to send its status
      finished = true;
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      observe?.(method, grpc.status[code], ms / 1000);
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
          // The client went away (a Watch stream ended by its client): no status is sent.
          // grpc-js answers undecodable bytes INTERNAL below every interceptor, so such a
          // call also ends here, with no request: say both, since the two look the same here.
          onCancel: () =>
            finish(
              grpc.status.CANCELLED,
              request === undefined ? 'ended before a request was read: cancelled by the client, or bytes grpc-js could not decode (answered INTERNAL)' : 'cancelled by the client',
            ),
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
  const ownFiles = [__dirname, process.execPath, cfg.stateDir, ...(cfg.auditLog ? [cfg.auditLog] : [])];
  const core = new IoFilterCore(cfg, log, kernel, ownFiles, sysfs, cgroups);
  const { hub, metrics } = eventsAndMetrics(cfg, core, log, sysfs);
  await core.start();

  const server = new grpc.Server({
    interceptors: [interceptor(auth, audit, log, metrics && ((m, c, s) => metrics.observeRpc(m, c, s)))],
    'grpc.max_receive_message_length': cfg.maxMessageBytes,
    'grpc.max_concurrent_streams': 256,
  });
  const { def, grpcObj } = loadProto();
  const handlers: IoFilterServiceHandlers = {
    Attach: unary(async (req) => ({ state: await core.attach(req) })),
    Detach: unary(() => core.detach()),
    SetFilter: unary((req) => core.setFilter(req)),
    DeleteFilter: unary((req) => core.deleteFilter(req)),
    Status: unary((req) => core.status(req)),
    ClearFilters: unary(() => core.clearFilters()),
    Watch: (call) => serveWatch(hub, call, sysfs, cfg.attachOnDemand),
    Wrap: unary((req) => core.wrap(req.device, req.name)),
    Unwrap: unary((req) => core.unwrap(req.name)),
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
  let metricsServer: MetricsServer | undefined;
  if (metrics && cfg.metricsListen) {
    try {
      metricsServer = await serveMetrics(cfg.metricsListen, metrics, log);
    } catch (e) {
      server.forceShutdown();
      core.close();
      throw new Error(`cannot serve metrics on ${cfg.metricsListen}: ${(e as Error).message}`);
    }
  }

  const stop = async (graceMs = 5000) => {
    hub.close(); // Watch streams would otherwise hold tryShutdown for the whole grace period
    await metricsServer?.close();
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
  return { core, server, address, hub, metricsAddress: metricsServer?.address, stop };
}

/** The Watch hub, following the attached handle, and the metrics registry when asked for. */
function eventsAndMetrics(cfg: AgentConfig, core: IoFilterCore, log: Logger, sysfs?: string) {
  const names = new DeviceNames(sysfs);
  const hub = new EventHub({
    ...cfg.watch,
    toWire: (e) => toIoEvent(e, names),
    drops: () => statusDrops(core, names),
    onError: (what, e) => log.error({ err: (e as Error)?.message ?? String(e) }, `watch: ${what} failed`),
  });
  // the native ring-buffer reader runs while attached, watched or not, so the kernel
  // never counts events as lost just because nobody was watching
  core.onFilterer((f) => (f ? hub.attach(core.backends.companions.events(nativeEventSource(f))) : hub.detach()));
  const metrics = cfg.metricsListen ? new AgentMetrics(() => core.status(), hub) : undefined;
  return { hub, metrics };
}
