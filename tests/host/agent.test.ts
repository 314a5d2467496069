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
import { RunningAgent, startAgent } from '../helpers/agent';
import { createLoop, directIo, LoopDevice } from '../helpers/loop';
import { BUILT, describeIf, hostUnavailableReason } from '../helpers/tier';

const d = describeIf(hostUnavailableReason(BUILT.agent));

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

  test('50 concurrent clients setting and deleting on the same devices: each device ends as its last acknowledged call left it', async () => {
    fs.writeFileSync(auditLog, ''); // the agent appends; only this test's lines from here
    const devices = [disk.path, pdisk.partitions[0].path, pdisk.partitions[1].path];
    const clients = Array.from({ length: 50 }, () => new IoFilterClient(agent.address, { timeoutMs: 30_000 }));
    const acks: string[] = [];
    await Promise.all(
      clients.map(async (c, i) => {
        for (let k = 0; k < 6; k++) {
          const device = devices[(i + k) % devices.length];
          const id = i * 100 + k + 1;
          if ((i + k) % 4 === 3) await c.deleteFilter(device);
          // the call id rides in max_failures and in the range, so a torn write would show
          else await c.setFilter({ device, ranges: [{ start: id, end: id + 10, ops: ['OP_WRITE'] }], maxFailures: id });
          acks.push(`${device}#${id}`);
        }
      }),
    );
    clients.forEach((c) => c.close());
    expect(acks).toHaveLength(300);

    // the audit trail is written as each call is answered, in the agent's (serial) order
    const lines = fs.readFileSync(auditLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const mutations = lines.filter((l) => l.rpc === 'SetFilter' || l.rpc === 'DeleteFilter');
    expect(mutations).toHaveLength(300);
    expect(mutations.every((l) => l.result === 'ok')).toBe(true);
    const st = await client.status();
    for (const dev of devices) {
      const last = [...mutations].reverse().find((l) => l.request.device === dev);
      const f = st.filters.find((x) => `/dev/${x.device?.name}` === dev);
      if (last.rpc === 'DeleteFilter') {
        expect(f).toBeUndefined();
      } else {
        const id = last.request.maxFailures;
        expect(f?.maxFailures).toBe(String(id));
        expect(f?.ranges.map((r) => [r.start, r.end])).toEqual([[String(id), String(Number(id) + 10)]]);
      }
    }
    for (const f of st.filters) await client.deleteFilter(`${f.device?.major}:${f.device?.minor}`);
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
    const before = statusLines().length;
    await client.status();
    await new Promise((r) => setTimeout(r, 200)); // the log line is written as the answer goes out
    const after = statusLines();
    expect(after).toHaveLength(before + 1);
    expect(after.at(-1)).toMatchObject({ rpc: 'Status', code: 'OK', identity: 'local', peer: expect.stringMatching(/127\.0\.0\.1:\d+/) });
    expect(after.at(-1).ms).toBeGreaterThanOrEqual(0);
  });
});
