// A real agent (observe mode, --metrics-listen) on loop devices, after real I/O:
// every per-range matched/failed counter and every per-filter figure scraped from
// /metrics equals Status, the attach state and mode are right, and the RPCs made are
// counted. Needs root (BPF, loop devices) and `npm run build`.
import { IoFilterClient } from '../../client';
import type { StatusResponse__Output } from '../../proto/gen/iofilter/v1/StatusResponse';
import { RunningAgent, startAgent } from '../helpers/agent';
import { createLoop, directIo, LoopDevice } from '../helpers/loop';
import { BUILT, describeIf, hostUnavailableReason } from '../helpers/tier';
import { expectScrapeEqualsStatus, Metrics, scrape } from '../helpers/prom';
import { freePort } from '../helpers/common';

const d = describeIf(hostUnavailableReason(BUILT.agent));

d('metrics of a real agent on the host kernel', () => {
  const pinDir = `/sys/fs/bpf/iofilter-metrics-test-${process.pid}`;
  let agent: RunningAgent;
  let client: IoFilterClient;
  let metrics: string;
  let disk: LoopDevice;
  let pdisk: LoopDevice;

  beforeAll(async () => {
    disk = createLoop(64);
    pdisk = createLoop(40, [16, 16]);
    metrics = `127.0.0.1:${await freePort()}`;
    agent = await startAgent({ pinDir, attach: 'observe', args: ['--metrics-listen', metrics.split(':')[1]] });
    client = new IoFilterClient(agent.address, { timeoutMs: 10_000 });
  });
  afterAll(async () => {
    await client?.detach().catch(() => undefined);
    client?.close();
    await agent?.stop();
    disk?.detach();
    pdisk?.detach();
  });

  /** A scrape between two equal Status answers: nothing counted in between (retried if the kernel counted something meanwhile). */
  async function consistent(): Promise<{ st: StatusResponse__Output; m: Metrics }> {
    const counters = (s: StatusResponse__Output) => JSON.stringify(s.filters.map((f) => [f.ranges, f.matchedIos, f.failedIos, f.eventsDropped]));
    for (let i = 0; i < 10; i++) {
      const st = await client.status();
      const m = await scrape(metrics);
      if (counters(st) === counters(await client.status())) return { st, m };
    }
    throw new Error('the counters kept changing between Status calls: something else does I/O to the test devices');
  }

  test('a bare --metrics-listen port is served on loopback', async () => {
    expect(agent.logs()).toContain(`"metrics":"http://${metrics}/metrics"`);
    expect(agent.logs()).not.toMatch(/non-loopback/);
  });

  test('after real I/O, every per-range and per-filter counter equals Status', async () => {
    const p1 = pdisk.partitions[0];
    await client.setFilter({ device: disk.path, ranges: [{ start: 100, end: 199, ops: ['OP_WRITE'] }, { start: 4096, end: 8191, ops: ['OP_READ', 'OP_WRITE'] }], ttlMs: 600_000 });
    await client.setFilter({ device: p1.path, ranges: [{ start: 0, end: 63, ops: ['OP_WRITE'] }], ttlMs: 300_000 });
    directIo(disk.path, 'write', 96, 8); // overlaps range 0
    directIo(disk.path, 'write', 150, 8); // inside range 0
    directIo(disk.path, 'write', 200, 8); // next to it: no
    directIo(disk.path, 'read', 120, 8); // wrong op: no
    directIo(disk.path, 'read', 5000, 8); // range 1
    directIo(disk.path, 'write', 8190, 8); // overlaps range 1's end
    directIo(p1.path, 'write', 8, 8); // the partition's range
    directIo(pdisk.path, 'write', p1.start + 32, 8); // the same sectors through the disk

    const { st, m } = await consistent();
    expectScrapeEqualsStatus(m, st);
    // and the I/O above was really counted, so the comparison compared something
    const byDev = (d: { major: number; minor: number }) => st.filters.find((f) => f.device?.major === d.major && f.device?.minor === d.minor)!;
    expect(byDev(disk).ranges.map((r) => [r.matched, r.failed])).toEqual([['2', '2'], ['2', '2']]);
    expect(byDev(p1).ranges.map((r) => [r.matched, r.failed])).toEqual([['2', '2']]);

    expect(m.value('iofilter_attached')).toBe(1);
    expect(m.value('iofilter_attach_mode', { mode: 'observe' })).toBe(1);
    expect(m.value('iofilter_filters')).toBe(2);
    expect(m.value('iofilter_filters_in_force')).toBe(2);
    // both served by the BPF program with the default fault
    expect(m.all('iofilter_filter_info').map((s) => [s.labels.filter_id, s.labels.backend, s.labels.fault, s.labels.detail, s.value]).sort())
      .toEqual(st.filters.map((f) => [String(f.id), 'bpf', 'error', 'error EIO', 1]).sort());
    const ttl = m.value('iofilter_filter_ttl_remaining_seconds', { dev: `${disk.major}:${disk.minor}` });
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(600);
  });

  test('RPCs are counted by method and code', async () => {
    const count = (m: Metrics, method: string, code: string) => m.all('iofilter_rpc_total', { method, code }).reduce((n, s) => n + s.value, 0);
    const before = await scrape(metrics);
    await client.status();
    await client.status();
    await client.deleteFilter('7:1048575').catch(() => undefined); // no such device
    const after = await scrape(metrics);
    expect(count(after, 'Status', 'OK') - count(before, 'Status', 'OK')).toBe(2);
    const deletes = ['OK', 'NOT_FOUND', 'INVALID_ARGUMENT'].reduce((n, c) => n + count(after, 'DeleteFilter', c) - count(before, 'DeleteFilter', c), 0);
    expect(deletes).toBe(1);
  });
});
