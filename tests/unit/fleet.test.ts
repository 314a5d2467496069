// The fan-out engine against 200 in-process endpoints: the concurrency bound holds
// (and is reached), every host gets exactly one result in the order given, and hosts
// that refuse, hang or answer with an error are each reported as such.
import * as grpc from '@grpc/grpc-js';
import { runFleet } from '../../client';
import { loadProto } from '../../proto';
import type { IoFilterServiceHandlers } from '../../proto/gen/iofilter/v1/IoFilterService';
import { freePort } from '../helpers/vm';

interface Endpoint { server: grpc.Server; address: string }

let inFlight = 0;
let maxInFlight = 0;
const calls = new Map<string, number>();

async function endpoint(behaviour: 'ok' | 'hang' | 'error', delayMs = 20): Promise<Endpoint> {
  const server = new grpc.Server();
  let address = '';
  const handlers: Partial<IoFilterServiceHandlers> = {
    Status: (_call, cb) => {
      calls.set(address, (calls.get(address) ?? 0) + 1);
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      if (behaviour === 'hang') return; // never answers: the deadline must end it
      setTimeout(() => {
        inFlight--;
        if (behaviour === 'error') cb({ code: grpc.status.NOT_FOUND, details: 'no such thing' });
        else cb(null, { hostname: address, kernelRelease: 'fake' });
      }, delayMs);
    },
  };
  server.addService(loadProto().grpcObj.iofilter.v1.IoFilterService.service, handlers as IoFilterServiceHandlers);
  const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  address = `127.0.0.1:${port}`;
  return { server, address };
}

const servers: grpc.Server[] = [];
afterAll(() => servers.forEach((s) => s.forceShutdown()));

test('200 endpoints, concurrency 16: the bound holds and is reached; one result per host, in order', async () => {
  const eps = await Promise.all(Array.from({ length: 200 }, () => endpoint('ok')));
  servers.push(...eps.map((e) => e.server));
  inFlight = maxInFlight = 0;
  calls.clear();
  const hosts = eps.map((e) => e.address);
  const progress: number[] = [];
  const results = await runFleet(hosts, (c) => c.status(), { concurrency: 16, timeoutMs: 5000, onResult: (_r, done) => progress.push(done) });
  expect(maxInFlight).toBe(16);
  expect(results.map((r) => r.host)).toEqual(hosts);
  expect(results.every((r) => r.outcome === 'ok')).toBe(true);
  expect(results.map((r) => (r.value as { hostname: string }).hostname)).toEqual(hosts); // each answer came from its own host
  expect([...calls.values()].every((n) => n === 1)).toBe(true);
  expect(calls.size).toBe(200);
  expect(progress).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
}, 60_000);

test('refused, hanging and erroring hosts: unreachable, unreachable, error - never a throw', async () => {
  const ok = await endpoint('ok', 1);
  const hang = await endpoint('hang');
  const bad = await endpoint('error', 1);
  servers.push(ok.server, hang.server, bad.server);
  const closed = `127.0.0.1:${await freePort()}`; // nothing listens there
  const started = Date.now();
  const results = await runFleet([ok.address, closed, hang.address, bad.address], (c) => c.status(), { concurrency: 4, timeoutMs: 1500 });
  expect(results.map((r) => r.outcome)).toEqual(['ok', 'unreachable', 'unreachable', 'error']);
  expect(results[2].error?.code).toBe('DEADLINE_EXCEEDED');
  expect(results[3].error).toEqual({ code: 'NOT_FOUND', message: 'no such thing' });
  expect(Date.now() - started).toBeLessThan(5000); // the hang cost one deadline, not more
});
