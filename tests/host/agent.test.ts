// A real agent process in observe mode on loopback, driven over gRPC against loop
// devices: the whole lifecycle, restart adoption, serialised concurrent mutations,
// health and reflection.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProto } from 'grpc-health-check';
import { IoFilterClient } from '../../client';
import { LOADER_OPTIONS } from '../../proto';
import { packRanges } from '../../proto/packed';
import type { DeleteFilterResponse__Output } from '../../proto/gen/iofilter/v1/DeleteFilterResponse';
import type { Filter__Output } from '../../proto/gen/iofilter/v1/Filter';
import { RunningAgent, startAgent } from '../helpers/agent';
import { createLoop, directIo, LoopDevice } from '../helpers/loop';
import { BUILT, describeIf, hostUnavailableReason } from '../helpers/tier';
import { until } from '../helpers/wait';

const d = describeIf(hostUnavailableReason(BUILT.agent));

/** One call of the concurrency test: what it sent, and what it got back. */
interface Call {
  id: number;
  client: number;
  dev: { path: string; major: number; minor: number };
  op: 'set' | 'delete';
  set?: Filter__Output;
  deleted?: DeleteFilterResponse__Output;
}

d('iofilter-agent on the host kernel (observe mode)', () => {
  const pinDir = `/sys/fs/bpf/iofilter-agent-test-${process.pid}`;
  const auditLog = `/tmp/iofilter-agent-test-${process.pid}.audit.jsonl`;
  let agent: RunningAgent;
  let client: IoFilterClient;
  let disk: LoopDevice;
  let pdisk: LoopDevice;

  const start = async () => {
    agent = await startAgent({ pinDir, attach: 'observe', args: ['--audit-log', auditLog] });
    client?.close();
    client = new IoFilterClient(agent.address, { timeoutMs: 10_000 });
  };

  beforeAll(async () => {
    disk = createLoop(64);
    pdisk = createLoop(40, [16, 16]);
    await start();
  });
  afterAll(async () => {
    client?.close();
    await client?.detach().catch(() => undefined);
    await agent?.stop();
    if (fs.existsSync(pinDir)) {
      // leave nothing behind even if a test failed half-way
      const a = await startAgent({ pinDir, attach: 'none' });
      const c = new IoFilterClient(a.address);
      await c.detach();
      c.close();
      await a.stop();
    }
    fs.rmSync(auditLog, { force: true });
    disk?.detach();
    pdisk?.detach();
  });

  test('attach -> set -> I/O -> counters in Status -> delete -> detach', async () => {
    const st0 = await client.status();
    expect(st0.state).toMatchObject({ attached: true, mode: 'MODE_OBSERVE', pinDir });
    expect(st0.capabilities.find((c) => c.mode === 'MODE_OBSERVE')?.available).toBe(true);
    expect(st0.agentVersion).toMatch(/^\d+\.\d+\.\d+/);

    const f = await client.setFilter({ device: disk.path, ranges: [{ start: 100, end: 199, ops: ['OP_WRITE'] }], ttlMs: 600_000 });
    expect(f.device).toMatchObject({ major: disk.major, minor: disk.minor, name: path.basename(disk.path), partition: false });
    directIo(disk.path, 'write', 96, 8); // overlaps: would fail
    directIo(disk.path, 'write', 200, 8); // adjacent: no
    directIo(disk.path, 'read', 120, 8); // wrong op: no
    const st = await client.status();
    expect(st.filters).toHaveLength(1);
    expect(st.filters[0].ranges[0]).toMatchObject({ start: '100', end: '199', ops: ['OP_WRITE'], matched: '1', failed: '1' });
    expect(Number(st.filters[0].remainingMs)).toBeGreaterThan(590_000);

    expect(await client.deleteFilter(disk.path)).toMatchObject({ existed: true, removed: 1 });
    expect(await client.deleteFilter(disk.path)).toMatchObject({ existed: false, removed: 0 });
    expect((await client.status()).filters).toHaveLength(0);

    expect(await client.detach()).toMatchObject({ wasAttached: true });
    expect(fs.readdirSync(pinDir)).toEqual([]); // the agent holds the (empty) pin dir's lock for its lifetime
    const err = await client.setFilter({ device: disk.path, wholeDeviceOps: ['OP_WRITE'] }).then(() => null, (e) => e);
    expect(grpc.status[err.code]).toBe('FAILED_PRECONDITION');
    expect((await client.attach('observe')).attached).toBe(true);
  });

  test('views: SetFilter answers BASIC (no ranges) unless asked; Status is FULL (every range, its counters) unless asked; packed and repeated ranges store the same filter', async () => {
    const ranges = Array.from({ length: 4096 }, (_, i) => ({ start: String(i * 16), end: String(i * 16 + 7), ops: ['OP_WRITE' as const] }));
    const basic = await client.setFilter({ device: disk.path, packedRanges: packRanges(ranges), ttlMs: 600_000 });
    expect(basic.ranges).toEqual([]);
    expect(basic).toMatchObject({ device: { major: disk.major, minor: disk.minor }, wholeDevice: false, hasExpiry: true, matchedIos: '0', failedIos: '0' });
    directIo(disk.path, 'write', 100 * 16, 8); // range 100: would fail
    directIo(disk.path, 'write', 8, 8); // the gap between ranges 0 and 1: not matched
    const full = (await client.status()).filters;
    expect(full).toHaveLength(1);
    expect(full[0].id).toBe(basic.id);
    expect(full[0].ranges.map((r) => [r.start, r.end, r.ops])).toEqual(ranges.map((r) => [r.start, r.end, r.ops]));
    expect(full[0].ranges.flatMap((r, i) => (r.matched !== '0' || r.failed !== '0' ? [`${i}:${r.matched}/${r.failed}`] : []))).toEqual(['100:1/1']);
    const b = (await client.status('basic')).filters;
    expect(b).toHaveLength(1);
    expect(b[0]).toMatchObject({ id: basic.id, ranges: [], matchedIos: '1', failedIos: '1', hasExpiry: true });
    const viaRepeated = await client.setFilter({ device: disk.path, ranges, ttlMs: 600_000 }, 'full');
    expect(viaRepeated.ranges.map((r) => [r.start, r.end, r.ops])).toEqual(full[0].ranges.map((r) => [r.start, r.end, r.ops]));
    expect((await client.status()).filters.map((f) => f.id)).toEqual([viaRepeated.id]); // it replaced the packed one
    expect(await client.deleteFilter(disk.path)).toMatchObject({ existed: true, removed: 1 });
  });

  test('a partition device path resolves on the agent; whole-disk I/O onto it is counted', async () => {
    const p1 = pdisk.partitions[0];
    const f = await client.setFilter({ device: p1.path, ranges: [{ start: 0, end: 7, ops: ['OP_READ'] }] });
    expect(f.device).toMatchObject({ partition: true, diskName: path.basename(pdisk.path), startSector: String(p1.start) });
    directIo(pdisk.path, 'read', p1.start, 8);
    expect((await client.status()).filters[0].ranges[0]).toMatchObject({ matched: '1', failed: '1' });
    await client.deleteFilter(p1.path);
  });

  test('a restarted agent adopts the pins: same filters and counters (after SIGTERM and after SIGKILL)', async () => {
    await client.setFilter({ device: disk.path, ranges: [{ start: 0, end: 99, ops: ['OP_WRITE'] }] });
    await client.setFilter({ device: pdisk.partitions[1].path, wholeDeviceOps: ['OP_READ'] });
    directIo(disk.path, 'write', 0, 8);
    directIo(disk.path, 'write', 8, 8);
    const before = (await client.status()).filters.map((f) => ({ device: f.device, ranges: f.ranges }));
    const progIds = (await client.status()).state?.progIds;

    expect(await agent.stop()).toBe(0);
    expect(agent.logs()).toMatch(/2 pinned filter\(s\) stay in force/);
    await start();
    let st = await client.status();
    expect(st.state).toMatchObject({ attached: true, adopted: true, progIds });
    expect(st.filters.map((f) => ({ device: f.device, ranges: f.ranges }))).toEqual(before);

    directIo(disk.path, 'write', 16, 8); // counted while the new agent runs
    await agent.kill('SIGKILL');
    await start();
    st = await client.status();
    expect(st.state?.adopted).toBe(true);
    expect(st.filters.find((f) => f.device?.minor === disk.minor)?.ranges[0]).toMatchObject({ matched: '3', failed: '3' });
    for (const f of st.filters) await client.deleteFilter(`${f.device?.major}:${f.device?.minor}`);
  });

  test('50 clients x 6 calls on 3 devices: each answer is what its call sent; the audit is the serial order; the end state is the last call', async () => {
    await client.clearFilters();
    fs.writeFileSync(auditLog, ''); // the agent appends; only this test's lines from here
    const devices = [disk, ...pdisk.partitions];
    // Each call names its device through a symlink of its own, so its audit line says
    // which call it was (deletes carry nothing else that could tell them apart).
    const link = (id: number) => `/dev/iofilter-cc-${process.pid}-${id}`;
    const calls = new Map<number, Call>();
    for (let i = 0; i < 50; i++)
      for (let k = 0; k < 6; k++) {
        const id = i * 100 + k + 1; // rides in max_failures and the range, so a torn write would show
        const dev = devices[(i + k) % devices.length];
        calls.set(id, { id, client: i, dev, op: (i + k) % 4 === 3 ? 'delete' : 'set' });
        fs.symlinkSync(dev.path, link(id));
      }
    const clients = Array.from({ length: 50 }, () => new IoFilterClient(agent.address, { timeoutMs: 30_000 }));
    try {
      await Promise.all(
        clients.map(async (c, i) => {
          for (let k = 0; k < 6; k++) {
            const call = calls.get(i * 100 + k + 1)!;
            if (call.op === 'delete') call.deleted = await c.deleteFilter(link(call.id));
            else call.set = await c.setFilter({ device: link(call.id), ranges: [{ start: call.id, end: call.id + 10, ops: ['OP_WRITE'] }], maxFailures: call.id }, 'full');
          }
        }),
      );
    } finally {
      clients.forEach((c) => c.close());
      for (const id of calls.keys()) fs.rmSync(link(id), { force: true });
    }
    const all = [...calls.values()];
    const numbers = (d: { major: number; minor: number }) => ({ major: d.major, minor: d.minor });

    // every answer is about its own call: its device, and a set shows exactly what it sent
    const exact = (c: Call) => ({ device: numbers(c.dev), ranges: [{ start: String(c.id), end: String(c.id + 10), ops: ['OP_WRITE'], matched: '0', failed: '0' }], maxFailures: String(c.id), failures: '0' });
    const sets = all.filter((c) => c.op === 'set');
    expect(sets.map((c) => ({ device: numbers(c.set!.device!), ranges: c.set!.ranges, maxFailures: c.set!.maxFailures, failures: c.set!.failures }))).toEqual(sets.map(exact));
    const dels = all.filter((c) => c.op === 'delete');
    expect(dels.map((c) => numbers(c.deleted!.device!))).toEqual(dels.map((c) => numbers(c.dev)));

    // the audit trail has each acknowledged call exactly once: none lost, none twice, none made up
    const lines = fs.readFileSync(auditLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const prefix = link(0).slice(0, -1);
    const ours = (l: { request?: { device?: unknown } }) => typeof l.request?.device === 'string' && l.request.device.startsWith(prefix);
    expect(lines.filter((l) => !ours(l) || l.result !== 'ok')).toEqual([]);
    const order = lines.map((l) => calls.get(Number(l.request.device.slice(prefix.length)))!);
    expect(order.map((c) => c?.id).sort((a, b) => a - b)).toEqual([...calls.keys()].sort((a, b) => a - b));
    expect(order.map((c) => `${c.op}`)).toEqual(lines.map((l) => (l.rpc === 'SetFilter' ? 'set' : 'delete')));
    // it is the order the filter table saw: each put hands out the next filter id
    const ids = order.filter((c) => c.op === 'set').map((c) => c.set!.id);
    expect(ids).toEqual([...new Set(ids)].sort((a, b) => a - b));
    // and no client's call overtook the one it waited for
    for (let i = 0; i < 50; i++) expect(order.filter((c) => c.client === i).map((c) => c.id)).toEqual([1, 2, 3, 4, 5, 6].map((k) => i * 100 + k));

    // replayed in that order, per device: each delete found a filter iff the device's last call before it was a set
    const last = new Map<Call['dev'], Call | null>(devices.map((d) => [d, null]));
    const found: boolean[] = [];
    const expected: boolean[] = [];
    for (const c of order) {
      if (c.op === 'delete') {
        found.push(c.deleted!.existed && c.deleted!.removed === 1);
        expected.push(last.get(c.dev)?.op === 'set');
      }
      last.set(c.dev, c);
    }
    expect(found).toEqual(expected);

    // the end state of each device is its last call: that set's filter (its id, ranges, limit), or none
    const st = await client.status();
    const end = (d: { major: number; minor: number }) => {
      const f = st.filters.filter((x) => x.device?.major === d.major && x.device?.minor === d.minor);
      return f.map((x) => ({ id: x.id, ranges: x.ranges.map((r) => [r.start, r.end]), maxFailures: x.maxFailures }));
    };
    const want = (c: Call | null) => (c?.op === 'set' ? [{ id: c.set!.id, ranges: [[String(c.id), String(c.id + 10)]], maxFailures: String(c.id) }] : []);
    expect(devices.map(end)).toEqual(devices.map((d) => want(last.get(d)!)));
    expect(st.filters).toHaveLength(devices.filter((d) => last.get(d)?.op === 'set').length);
    await client.clearFilters();
  });

  test('the standard health service and server reflection answer', async () => {
    const health = grpc.loadPackageDefinition(protoLoader.loadSync(healthProto, LOADER_OPTIONS)) as any;
    const hc = new health.grpc.health.v1.Health(agent.address, grpc.credentials.createInsecure());
    for (const service of ['', 'iofilter.v1.IoFilterService']) {
      const r = await new Promise<any>((res, rej) => hc.Check({ service }, (e: Error, v: unknown) => (e ? rej(e) : res(v))));
      expect(r.status).toBe('SERVING');
    }
    hc.close();

    const reflProto = require.resolve('@grpc/reflection/build/proto/grpc/reflection/v1alpha/reflection.proto');
    const refl = grpc.loadPackageDefinition(protoLoader.loadSync(reflProto, LOADER_OPTIONS)) as any;
    const rc = new refl.grpc.reflection.v1alpha.ServerReflection(agent.address, grpc.credentials.createInsecure());
    const services = await new Promise<string[]>((res, rej) => {
      const call = rc.ServerReflectionInfo();
      call.on('data', (m: any) => {
        res(m.listServicesResponse.service.map((s: { name: string }) => s.name));
        call.end();
      });
      call.on('error', rej);
      call.write({ listServices: '' });
    });
    expect(services).toContain('iofilter.v1.IoFilterService');
    rc.close();
  });

  test('one JSON log line per RPC', async () => {
    const statusLines = () =>
      agent.logs().split('\n').filter((l) => l.includes('"msg":"rpc"')).map((l) => JSON.parse(l)).filter((l) => l.rpc === 'Status');
    // Log lines reach us through a pipe, later than the answers: rather than sleep, call
    // a marker (a DeleteFilter of a device that does not exist, named in its audit log
    // line) and wait for its line. Lines are written in order, so every earlier one is in.
    const marker = async (minor: number) => {
      expect(await client.deleteFilter(`7:${minor}`)).toMatchObject({ existed: false });
      await until(() => agent.logs().includes(`"device":"7:${minor}"`), `the log line of marker 7:${minor}`);
    };
    await marker(1048574);
    const before = statusLines().length;
    await client.status();
    await marker(1048573);
    const after = statusLines();
    expect(after).toHaveLength(before + 1);
    expect(after.at(-1)).toMatchObject({ rpc: 'Status', code: 'OK', identity: 'local', peer: expect.stringMatching(/127\.0\.0\.1:\d+/) });
    expect(after.at(-1).ms).toBeGreaterThanOrEqual(0);
  });
});
