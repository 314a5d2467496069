// iofilterctl and cgroup scopes: the requests `set ... --cgroup/--cgroup-id/--pid` and
// `delete [DEV] [scope | --all-scopes] | --id N` build, their usage errors (exit 1,
// nothing sent), and how scopes, filter ids and the agent's warnings read - in-process
// against a real agent over gRPC (fake kernel, fake sysfs, fake cgroup tree).
import pino from 'pino';
import { resolveConfig } from '../../agent/config';
import { Agent, createAgent } from '../../agent/server';
import type { IoFilterClient } from '../../client';
import { Io, parseArgs, runCli } from '../../client/cli';
import { fakeCgroups, FakeCgroups } from '../helpers/fake-cgroups';
import { fakeKernel, fakeSysfs } from '../helpers/fake-kernel';

function capture(): Io & { stdout: string; stderr: string } {
  const io = { stdout: '', stderr: '', stdoutTty: false, stderrTty: false, out: (s: string) => void (io.stdout += s), err: (s: string) => void (io.stderr += s) };
  return io;
}

/** The call a parsed command would make, captured by a stand-in client. */
async function requestOf(argv: string[]): Promise<{ method: string; arg: unknown }> {
  const p = parseArgs(['--host', 'db1', ...argv], capture())!;
  let seen: { method: string; arg: unknown } | undefined;
  const client = new Proxy({}, { get: (_t, method: string) => async (arg: unknown) => void (seen = { method, arg }) });
  await p.plan.run(client as IoFilterClient);
  return seen!;
}

describe('requests', () => {
  test.each<[string[], object]>([
    [['set', '7:0', '--write', '--cgroup', '/system.slice/db.service'], { device: '7:0', wholeDeviceOps: ['OP_WRITE'], cgroupPath: '/system.slice/db.service' }],
    [['set', '7:0', '--read', '--cgroup-id', '18446744073709551615'], { device: '7:0', wholeDeviceOps: ['OP_READ'], cgroupId: '18446744073709551615' }],
    [['set', '7:0', '--read', '--cgroup-id', '1234'], { device: '7:0', wholeDeviceOps: ['OP_READ'], cgroupId: 1234 }],
    [['set', '7:0', '--write', '--pid', '4321', '--range', '0-7'], { device: '7:0', ranges: [{ start: '0', end: '7', ops: ['OP_WRITE'] }], pid: 4321 }],
  ])('%j', async (argv, arg) => {
    expect(await requestOf(argv)).toEqual({ method: 'setFilterResponse', arg });
  });
  test.each<[string[], object]>([
    [['delete', '7:0'], { device: '7:0' }],
    [['delete', '7:0', '--cgroup', '/system.slice/db.service'], { device: '7:0', cgroupPath: '/system.slice/db.service' }],
    [['delete', '7:0', '--cgroup-id', '99'], { device: '7:0', cgroupId: 99 }],
    [['delete', '/dev/sda', '--pid', '1'], { device: '/dev/sda', pid: 1 }],
    [['delete', '7:0', '--all-scopes'], { device: '7:0', allScopes: true }],
    [['delete', '--id', '4294967295'], { id: 4294967295 }],
  ])('%j', async (argv, arg) => {
    expect(await requestOf(argv)).toEqual({ method: 'deleteFilter', arg });
  });
});

describe('usage errors: exit 1, nothing sent, message on stderr', () => {
  const H = ['--host', '127.0.0.1:1']; // would be refused at once (exit 4) if anything connected
  test.each([
    [['set', '7:0', '--write', '--cgroup', '/a', '--pid', '3'], /give at most one of --cgroup, --cgroup-id and --pid \(got --cgroup, --pid\)/],
    [['set', '7:0', '--write', '--cgroup-id', '5', '--pid', '3', '--cgroup', '/a'], /\(got --cgroup, --cgroup-id, --pid\)/],
    [['set', '7:0', '--write', '--cgroup', ''], /--cgroup: empty path/],
    [['set', '7:0', '--write', '--cgroup-id', '0'], /bad --cgroup-id "0": must be at least 1/],
    [['set', '7:0', '--write', '--cgroup-id', 'abc'], /bad --cgroup-id "abc": must be a whole number/],
    [['set', '7:0', '--write', '--cgroup-id', '18446744073709551616'], /bad --cgroup-id .* at most 2\^64-1/],
    [['set', '7:0', '--write', '--pid', '0'], /bad --pid "0": must be at least 1/],
    [['set', '7:0', '--write', '--pid', '-5'], /bad --pid "-5"/],
    [['set', '7:0', '--write', '--pid', '4194305'], /bad --pid "4194305": must be at most 4194304/],
    [['delete'], /delete: give DEV \(with an optional --cgroup, --cgroup-id, --pid or --all-scopes\), or --id N/],
    [['delete', '--all-scopes'], /delete: give DEV/],
    [['delete', '7:0', '--id', '3'], /delete --id N takes no DEV, scope or --all-scopes/],
    [['delete', '--id', '3', '--pid', '5'], /delete --id N takes no DEV/],
    [['delete', '--id', '0'], /bad --id "0": must be at least 1/],
    [['delete', '--id', '4294967296'], /bad --id "4294967296": must be at most 4294967295/],
    [['delete', '7:0', '--all-scopes', '--cgroup', '/a'], /either a scope .* or --all-scopes, not both/],
    [['delete', '7:0', '--cgroup-id', '1', '--pid', '2'], /give at most one of/],
    [['delete', 'sda', '--all-scopes'], /device "sda" is neither MAJ:MIN \(e.g. 259:2\) nor a \/dev path/],
  ])('%j', async (argv, msg) => {
    const io = capture();
    expect(await runCli([...H, ...argv], io)).toBe(1);
    expect(io.stdout).toBe('');
    expect(io.stderr).toMatch(msg);
  });
});

describe('output against an agent', () => {
  let agent: Agent;
  let cg: FakeCgroups;
  const kernel = fakeKernel();
  const ctl = async (...argv: string[]) => {
    const io = capture();
    const code = await runCli(['--host', agent.address, ...argv], io);
    return { code, out: io.stdout.split('\n').filter(Boolean).map((l) => l.slice(agent.address.length + 2)), raw: io.stdout, err: io.stderr };
  };
  beforeAll(async () => {
    cg = fakeCgroups();
    cg.addPid(4321, '/system.slice/db.service');
    const cfg = resolveConfig({ listen: '127.0.0.1:0', attach: 'observe', pinDir: '/sys/fs/bpf/unused' });
    agent = await createAgent(cfg, pino({ level: 'silent' }), kernel, fakeSysfs(), cg.resolver);
  });
  afterAll(async () => {
    await agent.stop(1000);
    cg.cleanup();
  });

  test('set lines name the scope and the filter id; warnings follow as host: warning: lines', async () => {
    const db = String(cg.id('/system.slice/db.service'));
    const a = await ctl('set', '7:0', '--write', '--pid', '4321', '--ttl', '10m');
    expect(a).toMatchObject({ code: 0, out: [`set loop0 (7:0), cgroup /system.slice/db.service (id ${db}, from pid 4321): whole device write; ttl 10m0s; filter 1`] });
    const worker = String(cg.id('/system.slice/db.service/worker'));
    const b = await ctl('set', '7:0', '--read', '--cgroup', '/system.slice/db.service/worker', '--ttl', '10m');
    expect(b.code).toBe(0);
    expect(b.out).toEqual([
      `set loop0 (7:0), cgroup /system.slice/db.service/worker (id ${worker}): whole device read; ttl 10m0s; filter 2`,
      expect.stringMatching(/^warning: the io controller is not enabled for \/system.slice\/db.service\/worker/),
      expect.stringMatching(/^warning: the memory controller is not enabled for \/system.slice\/db.service\/worker/),
    ]);
    const c = await ctl('set', '7:0', '--flush', '--ttl', '10m');
    expect(c.out).toEqual(['set loop0 (7:0): whole device flush; ttl 10m0s; filter 3']);
  });

  test('--json keeps the warnings in the value', async () => {
    const r = await ctl('--json', 'set', '7:1', '--write', '--cgroup', '/user.slice/u.scope');
    const obj = JSON.parse(r.raw);
    expect(obj.value.filter.cgroup).toEqual({ id: String(cg.id('/user.slice/u.scope')), path: '/user.slice/u.scope', fromPid: 0 });
    expect(obj.value.warnings).toEqual([expect.stringMatching(/^the io controller is not enabled for \/user.slice\/u.scope/)]);
  });

  test('status: an id and a cgroup column ("any" for unscoped filters)', async () => {
    const r = await ctl('status');
    const db = String(cg.id('/system.slice/db.service'));
    expect(r.raw).toMatch(/│ id\s+│ device\s+│ cgroup\s+│ ranges \(sectors\)\s+│ ops/);
    expect(r.raw).toMatch(new RegExp(`│ 1\\s+│ loop0 \\(7:0\\)\\s+│ /system.slice/db.service \\(id ${db}, from pid 4321\\)\\s+│ whole \\(0-2097151\\)\\s+│ write\\s+│`));
    expect(r.raw).toMatch(/│ 3\s+│ loop0 \(7:0\)\s+│ any\s+│ whole \(0-2097151\)\s+│ flush\s+│/);
  });

  test('delete DEV with scoped filters left on it: refused, each scope and its flag named, exit 2, nothing deleted', async () => {
    const before = kernel.filterer!.listFilters().length;
    const r = await ctl('delete', '7:0');
    expect(r.code).toBe(2);
    expect(r.out).toEqual([
      'error FAILED_PRECONDITION: 7:0 has 2 cgroup-scoped filters that a delete without a scope would leave in force; nothing was deleted: ' +
        'filter 1 for cgroup /system.slice/db.service (delete it with --cgroup /system.slice/db.service or --id 1); ' +
        'filter 2 for cgroup /system.slice/db.service/worker (delete it with --cgroup /system.slice/db.service/worker or --id 2). ' +
        '--all-scopes deletes every filter on 7:0; --id 3 deletes only its unscoped filter',
    ]);
    expect(kernel.filterer!.listFilters()).toHaveLength(before);
  });

  test('delete lines say what was deleted', async () => {
    expect((await ctl('delete', '7:0', '--cgroup', '/system.slice/db.service')).out).toEqual(['deleted filter on 7:0 for cgroup /system.slice/db.service']);
    expect((await ctl('delete', '7:0', '--pid', '4321')).out).toEqual(['no filter on 7:0 for the cgroup of pid 4321']);
    expect((await ctl('delete', '--id', '4')).out).toEqual(['deleted filter with id 4']); // 7:1's
    expect((await ctl('delete', '7:0', '--all-scopes')).out).toEqual(['deleted 2 filters on 7:0 (all scopes)']);
    expect((await ctl('delete', '7:0')).out).toEqual(['no filter on 7:0']);
    expect(kernel.filterer!.listFilters()).toEqual([]);
  });

  test("an agent's refusal of a scope is a per-host error (exit 2)", async () => {
    const r = await ctl('set', '7:0', '--write', '--cgroup', '/nope.slice');
    expect(r.code).toBe(2);
    expect(r.out).toEqual([expect.stringMatching(/^error NOT_FOUND: cgroup_path: "\/nope.slice": no cgroup /)]);
  });
});
