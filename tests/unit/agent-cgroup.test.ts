// Cgroup-scoped filters over real gRPC against an in-process agent (fake kernel keyed by
// (device, cgroup id), fake sysfs, fake cgroup v2 tree): at most one scope, bad values
// refused before the kernel is touched, filters on one device differing only by cgroup,
// replace and delete by scope / all scopes / id, Status showing the scope, warnings.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { status } from '@grpc/grpc-js';
import pino from 'pino';
import { resolveConfig } from '../../agent/config';
import { Agent, createAgent } from '../../agent/server';
import { IoFilterClient } from '../../client';
import type { DeleteFilterRequest } from '../../proto/gen/iofilter/v1/DeleteFilterRequest';
import type { SetFilterRequest } from '../../proto/gen/iofilter/v1/SetFilterRequest';
import { fakeCgroups, FakeCgroups } from '../helpers/fake-cgroups';
import { fakeKernel, fakeSysfs } from '../helpers/fake-kernel';

let agent: Agent;
let client: IoFilterClient;
let cg: FakeCgroups;
const kernel = fakeKernel();
const cfg = resolveConfig({ listen: '127.0.0.1:0', attach: 'observe', pinDir: '/sys/fs/bpf/unused' });
const log = pino({ level: 'silent' });

beforeAll(async () => {
  cg = fakeCgroups();
  cg.addPid(4321, '/system.slice/db.service');
  agent = await createAgent(cfg, log, kernel, fakeSysfs(), cg.resolver);
  client = new IoFilterClient(agent.address, { timeoutMs: 5000 });
});
afterAll(async () => {
  client.close();
  await agent.stop(1000);
  cg.cleanup();
});
afterEach(() => kernel.filterer!.clearFilters());

const codeOf = (p: Promise<unknown>) => p.then(() => ({ code: 'OK', details: '' }), (e) => ({ code: status[e.code], details: e.details as string }));
const W = { wholeDeviceOps: ['OP_WRITE' as const] };

describe('SetFilter scope: refused before anything reaches the kernel', () => {
  const cases: [string, SetFilterRequest, string, RegExp][] = [
    ['path and id', { device: '7:0', ...W, cgroupPath: '/system.slice', cgroupId: 5 }, 'INVALID_ARGUMENT', /cgroup_path, cgroup_id: give at most one cgroup scope/],
    ['path and pid', { device: '7:0', ...W, cgroupPath: '/system.slice', pid: 4321 }, 'INVALID_ARGUMENT', /cgroup_path, pid: give at most one/],
    ['all three', { device: '7:0', ...W, cgroupPath: '/x', cgroupId: 5, pid: 1 }, 'INVALID_ARGUMENT', /cgroup_path, cgroup_id, pid: give at most one/],
    ['a pid beyond the largest pid_max', { device: '7:0', ...W, pid: 4194305 }, 'INVALID_ARGUMENT', /pid: 4194305 is out of range \(1..4194304\)/],
    ['a path with ..', { device: '7:0', ...W, cgroupPath: '/system.slice/../user.slice' }, 'INVALID_ARGUMENT', /cgroup_path: .* must not contain "\.\."/],
    ['a path outside the mount', { device: '7:0', ...W, cgroupPath: '/sys/fs/cgroup/blkio/x' }, 'INVALID_ARGUMENT', /is outside the cgroup2 mount/],
    ['a path that is not a cgroup', { device: '7:0', ...W, cgroupPath: '/system.slice/cgroup.procs' }, 'INVALID_ARGUMENT', /not a cgroup directory/],
    ['a path that does not exist', { device: '7:0', ...W, cgroupPath: '/nope.slice' }, 'NOT_FOUND', /cgroup_path: "\/nope.slice": no cgroup/],
    ['an id that does not exist', { device: '7:0', ...W, cgroupId: '18446744073709551615' }, 'NOT_FOUND', /cgroup_id: 18446744073709551615: no cgroup with this id/],
    ['a pid that does not exist', { device: '7:0', ...W, pid: 999999 }, 'NOT_FOUND', /pid: 999999: no such process/],
    ['a good scope on a bad device', { device: '7:99', ...W, cgroupPath: '/system.slice' }, 'NOT_FOUND', /no block device 7:99/],
    ['a good scope with a bad range', { device: '7:0', ranges: [{ start: 9, end: 1, ops: ['OP_READ'] }], cgroupPath: '/system.slice' }, 'INVALID_ARGUMENT', /start 9 > end 1/],
  ];
  test.each(cases)('%s', async (_n, req, code, msg) => {
    const before = kernel.filterer!.puts;
    const r = await codeOf(client.setFilter(req));
    expect(r.code).toBe(code);
    expect(r.details).toMatch(msg);
    expect(kernel.filterer!.puts).toBe(before);
  });

  test('a kernel without cgroup support: FAILED_PRECONDITION with its reason; unscoped filters still work', async () => {
    const k = fakeKernel({ cgroups: false });
    const a = await createAgent(cfg, log, k, fakeSysfs(), cg.resolver);
    const c = new IoFilterClient(a.address);
    try {
      expect(await codeOf(c.setFilter({ device: '7:0', ...W, cgroupPath: '/system.slice' }))).toEqual({
        code: 'FAILED_PRECONDITION',
        details: 'this kernel cannot scope filters by cgroup: kernel built without CONFIG_BLK_CGROUP',
      });
      expect(k.filterer!.puts).toBe(0);
      expect((await c.setFilter({ device: '7:0', ...W })).cgroup).toBeNull();
    } finally {
      c.close();
      await a.stop(1000);
    }
  });
});

describe('filters keyed by (device, cgroup)', () => {
  test('the kernel gets {id, level} and the path and pid as metadata', async () => {
    await client.setFilter({ device: '7:0', ...W, pid: 4321 });
    const spec = kernel.filterer!.specs.at(-1)!;
    expect(spec.cgroup).toEqual({ id: cg.id('/system.slice/db.service'), level: 2 });
    expect(spec.meta).toEqual({ cgroupPath: '/system.slice/db.service', fromPid: 4321 });
    await client.setFilter({ device: '7:0', ...W, cgroupPath: `${cg.dir}/user.slice` });
    expect(kernel.filterer!.specs.at(-1)!.cgroup).toEqual({ id: cg.id('/user.slice'), level: 1 });
    expect(kernel.filterer!.specs.at(-1)!.meta).toEqual({ cgroupPath: '/user.slice' });
    await client.setFilter({ device: '7:0', ...W });
    expect(kernel.filterer!.specs.at(-1)!.cgroup).toBeUndefined();
  });

  test('one device, three scopes; replacing one keeps the others; Status shows each scope and id', async () => {
    const a = await client.setFilterResponse({ device: '7:0', wholeDeviceOps: ['OP_WRITE'], cgroupPath: '/system.slice/db.service' });
    const b = await client.setFilterResponse({ device: '7:0', wholeDeviceOps: ['OP_READ'], cgroupId: String(cg.id('/kubepods.slice/pod-a')) });
    const none = await client.setFilter({ device: '7:0', wholeDeviceOps: ['OP_FLUSH'] });
    expect(a.filter!.cgroup).toEqual({ id: String(cg.id('/system.slice/db.service')), path: '/system.slice/db.service', fromPid: 0 });
    expect(b.filter!.cgroup).toEqual({ id: String(cg.id('/kubepods.slice/pod-a')), path: '/kubepods.slice/pod-a', fromPid: 0 });
    expect(none.cgroup).toBeNull();
    expect(new Set([a.filter!.id, b.filter!.id, none.id]).size).toBe(3);

    // replace A's filter: reads now; B's and the unscoped one untouched
    const a2 = await client.setFilter({ device: '7:0', wholeDeviceOps: ['OP_READ', 'OP_WRITE'], pid: 4321 });
    expect(a2.cgroup).toEqual({ id: String(cg.id('/system.slice/db.service')), path: '/system.slice/db.service', fromPid: 4321 });
    const st = await client.status();
    expect(st.filters).toHaveLength(3);
    const byScope = Object.fromEntries(st.filters.map((f) => [f.cgroup?.path ?? 'any', { id: f.id, ops: [...f.ranges[0].ops].sort(), fromPid: f.cgroup?.fromPid }]));
    expect(byScope).toEqual({
      '/system.slice/db.service': { id: a2.id, ops: ['OP_READ', 'OP_WRITE'], fromPid: 4321 },
      '/kubepods.slice/pod-a': { id: b.filter!.id, ops: ['OP_READ'], fromPid: 0 },
      any: { id: none.id, ops: ['OP_FLUSH'], fromPid: undefined },
    });
  });

  test('the same cgroup on two devices (disk and partition) are two filters', async () => {
    await client.setFilter({ device: '7:0', ...W, cgroupPath: '/user.slice' });
    await client.setFilter({ device: '7:1', ...W, cgroupPath: '/user.slice' });
    expect((await client.status()).filters.map((f) => `${f.device?.major}:${f.device?.minor} ${f.cgroup?.path}`).sort()).toEqual(['7:0 /user.slice', '7:1 /user.slice']);
  });

  test('warnings come back with the filter; none for a cgroup with io and memory enabled', async () => {
    const ok = await client.setFilterResponse({ device: '7:0', ...W, cgroupPath: '/system.slice/db.service' });
    expect(ok.warnings).toEqual([]);
    const w = await client.setFilterResponse({ device: '7:0', ...W, cgroupPath: '/system.slice/db.service/worker' });
    expect(w.warnings).toHaveLength(2);
    expect(w.warnings[0]).toMatch(/^the io controller is not enabled for \/system.slice\/db.service\/worker/);
    expect(w.warnings[1]).toMatch(/^the memory controller is not enabled for \/system.slice\/db.service\/worker/);
    expect(w.filter!.cgroup!.path).toBe('/system.slice/db.service/worker'); // set all the same
  });
});

describe('DeleteFilter by scope, all scopes, id', () => {
  const scopes: Record<string, Partial<SetFilterRequest>> = {
    db: { cgroupPath: '/system.slice/db.service' },
    pod: { cgroupPath: '/kubepods.slice/pod-b/ctr-b' },
    any: {},
  };
  beforeEach(async () => {
    for (const dev of ['7:0', '7:1']) for (const s of Object.values(scopes)) await client.setFilter({ device: dev, ...W, ...s });
  });
  const left = async () => (await client.status()).filters.map((f) => `${f.device?.major}:${f.device?.minor} ${f.cgroup?.path ?? 'any'}`).sort();

  test.each<[string, DeleteFilterRequest, number, string[]]>([
    ['by path', { device: '7:0', cgroupPath: '/system.slice/db.service' }, 1, ['7:0 /kubepods.slice/pod-b/ctr-b', '7:0 any']],
    ['by pid', { device: '7:0', pid: 4321 }, 1, ['7:0 /kubepods.slice/pod-b/ctr-b', '7:0 any']],
    ['all scopes', { device: '7:0', allScopes: true }, 3, []],
    ['a scope with no filter', { device: '7:0', cgroupPath: '/user.slice' }, 0, ['7:0 /kubepods.slice/pod-b/ctr-b', '7:0 /system.slice/db.service', '7:0 any']],
  ])('%s', async (_n, req, removed, rest) => {
    const r = await client.deleteFilter(req);
    expect(r).toMatchObject({ existed: removed > 0, removed, device: { major: 7, minor: 0, name: 'loop0' } });
    expect((await left()).filter((l) => l.startsWith('7:0'))).toEqual(rest);
    expect((await left()).filter((l) => l.startsWith('7:1'))).toHaveLength(3); // the partition's filters untouched
  });

  test('no scope while scoped filters remain: FAILED_PRECONDITION naming each scope and its flag; nothing deleted', async () => {
    const st = (await client.status()).filters.filter((f) => f.device?.minor === 0);
    const id = (p: string | undefined) => st.find((f) => (f.cgroup?.path || undefined) === p)!.id;
    const r = await codeOf(client.deleteFilter({ device: '7:0' }));
    expect(r.code).toBe('FAILED_PRECONDITION');
    expect(r.details).toBe(
      '7:0 has 2 cgroup-scoped filters that a delete without a scope would leave in force; nothing was deleted: ' +
        `filter ${id('/system.slice/db.service')} for cgroup /system.slice/db.service (delete it with --cgroup /system.slice/db.service or --id ${id('/system.slice/db.service')}); ` +
        `filter ${id('/kubepods.slice/pod-b/ctr-b')} for cgroup /kubepods.slice/pod-b/ctr-b (delete it with --cgroup /kubepods.slice/pod-b/ctr-b or --id ${id('/kubepods.slice/pod-b/ctr-b')}). ` +
        `--all-scopes deletes every filter on 7:0; --id ${id(undefined)} deletes only its unscoped filter`,
    );
    expect(await left()).toHaveLength(6);
  });

  test('no scope: refused with no unscoped filter too (a scope set by id is named by the path it resolved to)', async () => {
    await client.deleteFilter({ device: '7:1', allScopes: true });
    cg.mkdir('/tmp.slice');
    const cid = cg.id('/tmp.slice');
    const f = await client.setFilter({ device: '7:1', ...W, cgroupId: String(cid) });
    const r = await codeOf(client.deleteFilter({ device: '7:1' }));
    expect(r.code).toBe('FAILED_PRECONDITION');
    expect(r.details).toBe(
      `7:1 has a cgroup-scoped filter that a delete without a scope would leave in force; nothing was deleted: filter ${f.id} for cgroup /tmp.slice (delete it with --cgroup /tmp.slice or --id ${f.id}). --all-scopes deletes every filter on 7:1`,
    );
    expect((await client.status()).filters.map((x) => x.id)).toContain(f.id);
  });

  test('no scope, only the unscoped filter: deleted', async () => {
    await client.deleteFilter({ device: '7:1', allScopes: true });
    await client.setFilter({ device: '7:1', ...W });
    expect(await client.deleteFilter({ device: '7:1' })).toMatchObject({ existed: true, removed: 1 });
    expect((await left()).filter((l) => l.startsWith('7:1'))).toEqual([]);
  });

  test('by cgroup id, also after the cgroup is gone', async () => {
    cg.mkdir('/tmp.slice');
    const id = cg.id('/tmp.slice');
    await client.setFilter({ device: '7:0', ...W, cgroupId: String(id) });
    fs.rmSync(path.join(cg.dir, 'tmp.slice'), { recursive: true });
    expect(await client.deleteFilter({ device: '7:0', cgroupId: String(id) })).toMatchObject({ existed: true, removed: 1 });
  });

  test('by path, after the cgroup is gone: the path the filter was set with', async () => {
    cg.mkdir('/gone.slice');
    await client.setFilter({ device: '7:0', ...W, cgroupPath: '/gone.slice' });
    fs.rmSync(path.join(cg.dir, 'gone.slice'), { recursive: true });
    expect(await client.deleteFilter({ device: '7:0', cgroupPath: `${cg.dir}/gone.slice` })).toMatchObject({ existed: true, removed: 1 });
    expect(await client.deleteFilter({ device: '7:0', cgroupPath: '/gone.slice' })).toMatchObject({ existed: false, removed: 0 });
  });

  test('by id, whatever the device; the answer names the device', async () => {
    const pod = (await client.status()).filters.find((f) => f.device?.minor === 1 && f.cgroup?.path === '/kubepods.slice/pod-b/ctr-b')!;
    expect(await client.deleteFilter({ id: pod.id })).toMatchObject({ existed: true, removed: 1, device: { major: 7, minor: 1, name: 'loop0p1' } });
    expect(await left()).not.toContain('7:1 /kubepods.slice/pod-b/ctr-b');
    expect(await left()).toHaveLength(5);
    expect(await client.deleteFilter({ id: pod.id })).toMatchObject({ existed: false, removed: 0 });
  });

  test.each<[string, DeleteFilterRequest, string, RegExp]>([
    ['id with a device', { id: 3, device: '7:0' }, 'INVALID_ARGUMENT', /id: 3: give the filter id alone/],
    ['id with a scope', { id: 3, pid: 4321 }, 'INVALID_ARGUMENT', /id: 3: give the filter id alone/],
    ['a scope and all_scopes', { device: '7:0', cgroupPath: '/system.slice', allScopes: true }, 'INVALID_ARGUMENT', /either a cgroup scope or all_scopes/],
    ['two scopes', { device: '7:0', cgroupPath: '/system.slice', cgroupId: 7 }, 'INVALID_ARGUMENT', /give at most one cgroup scope/],
    ['neither device nor id', { allScopes: true }, 'INVALID_ARGUMENT', /device is empty: .* or a filter id/],
    ['a pid that does not exist', { device: '7:0', pid: 999999 }, 'NOT_FOUND', /pid: 999999: no such process/],
    ['a path with ..', { device: '7:0', cgroupPath: '/a/../b' }, 'INVALID_ARGUMENT', /must not contain/],
  ])('refused: %s, nothing deleted', async (_n, req, code, msg) => {
    const r = await codeOf(client.deleteFilter(req));
    expect(r.code).toBe(code);
    expect(r.details).toMatch(msg);
    expect(await left()).toHaveLength(6);
  });
});
