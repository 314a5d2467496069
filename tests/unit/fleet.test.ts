// The fan-out engine against 200 in-process endpoints: the concurrency bound holds
// (and is reached), every host gets exactly one result in the order given, and hosts
// that refuse, hang or answer with an error are each reported as such - never a throw.
import * as grpc from '@grpc/grpc-js';
import { IoFilterClient, runFleet } from '../../client';
import { FakeAgent, flight, startFakeAgent, stopFakeAgents } from '../helpers/fake-agent';
import { freePort } from '../helpers/common';

const agents: FakeAgent[] = [];
async function fake(...a: Parameters<typeof startFakeAgent>): Promise<FakeAgent> {
  const f = await startFakeAgent(...a);
  agents.push(f);
  return f;
}
afterAll(() => stopFakeAgents(agents));

describe('fan-out over 200 endpoints', () => {
  let eps: FakeAgent[];
  beforeAll(async () => {
    eps = await Promise.all(Array.from({ length: 200 }, () => fake({ delayMs: 20 })));
  });

  test('concurrency 16: max in flight is exactly 16; one result per host, in the order given, from that host', async () => {
    flight.reset();
    const hosts = eps.map((e) => e.address);
    const progress: number[] = [];
    const results = await runFleet(hosts, (c) => c.status(), {
      concurrency: 16,
      timeoutMs: 5000,
      onProgress: (done, total) => progress.push(done * 1000 + total),
    });
    expect(flight.max).toBe(16);
    expect(flight.now).toBe(0);
    expect(results).toHaveLength(200);
    expect(results.map((r) => r.host)).toEqual(hosts);
    expect(results.every((r) => r.ok && !r.error)).toBe(true);
    expect(results.map((r) => r.value!.hostname)).toEqual(hosts); // each answer came from its own host
    expect(eps.map((e) => e.calls.get('Status'))).toEqual(Array(200).fill(1));
    expect(progress).toEqual(Array.from({ length: 200 }, (_, i) => (i + 1) * 1000 + 200));
  }, 60_000);

  test('concurrency 1 is serial; concurrency above the host count is the host count', async () => {
    flight.reset();
    await runFleet(eps.slice(0, 8).map((e) => e.address), (c) => c.status(), { concurrency: 1, timeoutMs: 5000 });
    expect(flight.max).toBe(1);
    flight.reset();
    const r = await runFleet(eps.slice(0, 8).map((e) => e.address), (c) => c.status(), { concurrency: 1000, timeoutMs: 5000 });
    expect(flight.max).toBe(8);
    expect(r.every((x) => x.ok)).toBe(true);
  });

  test('onResult gives each answer once, with its index, as it finishes; keepValues false resolves results without them', async () => {
    const hosts = eps.slice(0, 40).map((e) => e.address);
    const seen: [number, string][] = [];
    const results = await runFleet(hosts, (c) => c.status(), {
      concurrency: 8,
      timeoutMs: 5000,
      keepValues: false,
      onResult: (i, r) => seen.push([i, (r.value as { hostname: string }).hostname]),
    });
    expect(seen.map(([i]) => i).sort((a, b) => a - b)).toEqual(hosts.map((_h, i) => i));
    expect(seen.every(([i, name]) => name === hosts[i])).toBe(true); // each index is its host's answer
    expect(results.map((r) => [r.host, r.ok, 'value' in r])).toEqual(hosts.map((h) => [h, true, false]));
  });

  test('no hosts: no results, no work', async () => {
    expect(await runFleet([], (c) => c.status())).toEqual([]);
  });
});

describe('hosts that fail', () => {
  test('refused, hanging and erroring hosts: unreachable, unreachable, error', async () => {
    const ok = await fake({ delayMs: 1 });
    const hang = await fake({ behaviour: 'hang' });
    const bad = await fake({ behaviour: { code: grpc.status.NOT_FOUND, details: 'no block device 7:99' }, delayMs: 1 });
    const closed = `127.0.0.1:${await freePort()}`; // bound, then closed: nothing listens
    const results = await runFleet([ok.address, closed, hang.address, bad.address], (c) => c.status(), { concurrency: 4, timeoutMs: 1500 });
    expect(results.map((r) => r.host)).toEqual([ok.address, closed, hang.address, bad.address]);
    expect(results.map((r) => r.ok)).toEqual([true, false, false, false]);
    expect(results[1].error).toMatchObject({ code: 'UNAVAILABLE', kind: 'unreachable', message: expect.stringMatching(/ECONNREFUSED/) });
    expect(results[1].error!.message).not.toMatch(/Resolution note/);
    expect(results[2].error).toMatchObject({ code: 'DEADLINE_EXCEEDED', kind: 'unreachable' });
    expect(results[3].error).toEqual({ code: 'NOT_FOUND', message: 'no block device 7:99', kind: 'error' });
    // the hang cost one deadline, not more: one call, never retried
    expect(hang.calls.get('Status')).toBe(1);
  });

  test('the deadline is per host: several calls that together overrun it make the host unreachable', async () => {
    const slow = await fake({ delayMs: 400 });
    const [r] = await runFleet([slow.address], async (c) => {
      await c.status();
      await c.status();
      return c.status(); // each call is within its own deadline; the third ends past the host's
    }, { timeoutMs: 1000 });
    // a deadline per call would have let all three through (400 ms each): the host's ran out
    expect(r).toMatchObject({ ok: false, error: { code: 'DEADLINE_EXCEEDED', kind: 'unreachable' } });
    // and it ran out on a later call, not because one call alone was too slow
    expect(slow.calls.get('Status')).toBeGreaterThanOrEqual(2);
  });

  test('a malformed host or a throwing callback is that host\'s error, not a throw', async () => {
    const ok = await fake({ delayMs: 1 });
    const results = await runFleet(['bad host!', ok.address, 'boom'], async (c, host) => {
      if (host === 'boom') throw new Error('boom'); // a bug on this side, before any call
      return c.status();
    });
    expect(results.map((r) => r.ok)).toEqual([false, true, false]);
    expect(results[0].error).toMatchObject({ code: 'LOCAL', kind: 'error', message: expect.stringMatching(/not a host name/) });
    expect(results[2].error).toEqual({ code: 'LOCAL', message: 'boom', kind: 'error' });
  });

  test('hosts are normalised: a bare name gets port 50051; results keep the host as given', async () => {
    const c = new IoFilterClient('db1');
    expect(c.address).toBe('db1:50051');
    c.close();
    const f = await fake({ delayMs: 1 });
    const [r] = await runFleet([` ${f.address}`], (cl) => cl.status(), { timeoutMs: 2000 });
    expect(r).toMatchObject({ host: ` ${f.address}`, ok: true });
  });
});
