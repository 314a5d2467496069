// In-process stand-ins for agents in unit tests of the client: grpc-js servers on
// 127.0.0.1 ephemeral ports that implement IoFilterService with a scripted behaviour
// (answer after a delay, answer with an error, never answer) and record how many calls
// are in flight at once across all of them.
import * as grpc from '@grpc/grpc-js';
import { loadProto } from '../../proto';
import type { IoFilterServiceHandlers } from '../../proto/gen/iofilter/v1/IoFilterService';
import type { StatusResponse } from '../../proto/gen/iofilter/v1/StatusResponse';
import type { WatchEvent } from '../../proto/gen/iofilter/v1/WatchEvent';

export type Behaviour = 'ok' | 'hang' | { code: grpc.status; details: string };

export interface FakeAgent {
  address: string;
  server: grpc.Server;
  /** Calls received, by method name. */
  calls: Map<string, number>;
  /** Requests received, in order. */
  requests: { method: string; req: unknown }[];
}

/** Shared across every fake agent of the process: the fan-out engine's view of the fleet. */
export const flight = { now: 0, max: 0, reset() { this.now = this.max = 0; } };

export interface FakeAgentOptions {
  behaviour?: Behaviour;
  delayMs?: number;
  /** Status to answer with; hostname defaults to the agent's address so answers can be told apart. */
  status?: Partial<StatusResponse>;
  /** Watch: these messages, then the stream ends with OK. Unset: the stream stays open with nothing. */
  watch?: WatchEvent[];
  /** A behaviour per method name, instead of `behaviour`. */
  methods?: Record<string, Behaviour>;
  /** SetFilter: the Filter to answer with, from the request. Unset: one on loop0 (7:0), unscoped. */
  filter?: (req: any) => object;
}

export async function startFakeAgent(o: FakeAgentOptions = {}): Promise<FakeAgent> {
  const behaviour = o.behaviour ?? 'ok';
  const delayMs = o.delayMs ?? 20;
  const server = new grpc.Server();
  const agent: FakeAgent = { address: '', server, calls: new Map(), requests: [] };

  // One generic unary handler; `answer` builds the OK response from the request.
  const handler = (method: string, answer: (req: any) => object) =>
    (call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) => {
      agent.calls.set(method, (agent.calls.get(method) ?? 0) + 1);
      agent.requests.push({ method, req: call.request });
      flight.now++;
      flight.max = Math.max(flight.max, flight.now);
      const b = o.methods?.[method] ?? behaviour;
      if (b === 'hang') {
        call.on('cancelled', () => flight.now--); // the client's deadline ends it
        return;
      }
      setTimeout(() => {
        flight.now--;
        if (b === 'ok') cb(null, answer(call.request));
        else cb(b);
      }, delayMs);
    };

  const handlers: IoFilterServiceHandlers = {
    Attach: handler('Attach', (req) => ({ state: { attached: true, mode: req.mode === 'MODE_AUTO' ? 'MODE_FMOD_RET' : req.mode, hook: 'fake/should_fail_bio' } })),
    Detach: handler('Detach', () => ({ wasAttached: true, filtersRemoved: 0 })),
    SetFilter: handler('SetFilter', (req) => ({
      filter: o.filter?.(req) ?? {
        device: { major: 7, minor: 0, name: 'loop0', diskName: 'loop0' },
        wholeDevice: !req.ranges.length,
        ranges: req.ranges.length ? req.ranges : [{ start: '0', end: '2097151', ops: req.wholeDeviceOps }],
        hasExpiry: req.ttlMs !== '0',
        remainingMs: req.ttlMs,
        probability: req.probability ?? 1,
        maxFailures: req.maxFailures,
      },
    })),
    DeleteFilter: handler('DeleteFilter', () => ({ existed: true, device: { major: 7, minor: 0, name: 'loop0' }, removed: 1 })),
    ClearFilters: handler('ClearFilters', () => ({ removed: 0 })),
    Wrap: handler('Wrap', (req) => ({ wrapped: { name: req.name, dmName: `iofilter-${req.name}`, path: `/dev/mapper/iofilter-${req.name}`, below: req.device } })),
    Unwrap: handler('Unwrap', () => ({ existed: true })),
    Watch: (call) => {
      agent.calls.set('Watch', (agent.calls.get('Watch') ?? 0) + 1);
      agent.requests.push({ method: 'Watch', req: call.request });
      if (behaviour === 'hang') return; // never answers, not even headers
      if (behaviour !== 'ok') return void call.emit('error', { ...behaviour, message: behaviour.details });
      call.sendMetadata(new grpc.Metadata());
      if (!o.watch) return;
      for (const m of o.watch) call.write(m);
      call.end();
    },
    Status: handler('Status', () => ({
      hostname: agent.address,
      kernelRelease: '6.1.0-fake',
      agentVersion: '0.0.0-fake',
      state: {
        attached: true, mode: 'MODE_OBSERVE', hook: 'tp_btf/block_bio_queue', pinned: true,
        selfTest: { passed: true, atUnixMs: '1700000000000', detail: 'fake self-test' },
        programs: [{ progId: 1, name: 'iofilter_observe_tp', recursionMisses: '0', runCount: '0' }],
      },
      capabilities: [
        { mode: 'MODE_FMOD_RET', available: false, reason: 'no CONFIG_FUNCTION_ERROR_INJECTION' },
        { mode: 'MODE_OBSERVE', available: true },
      ],
      ...o.status,
    })),
  };
  server.addService(loadProto().grpcObj.iofilter.v1.IoFilterService.service, handlers);
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))),
  );
  agent.address = `127.0.0.1:${port}`;
  return agent;
}

export function stopFakeAgents(agents: FakeAgent[]): void {
  for (const a of agents) a.server.forceShutdown();
}
