// `set --file` over real gRPC against an in-process agent (fake kernel with scripted
// FIEMAP answers, fake sysfs, fake cgroup tree): exactly one of device and file, no
// ranges with a file, refusals that change nothing, a file filter as an ordinary
// filter on its device (replacing the unscoped one, with TTL, probability, scope,
// events), and iofilterctl: parsing, usage errors, the set line and the status table.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { status } from '@grpc/grpc-js';
import pino from 'pino';
import { resolveConfig } from '../../agent/config';
import { Agent, createAgent } from '../../agent/server';
import { IoFilterClient } from '../../client';
import { Io, parseArgs, runCli } from '../../client/cli';
import type * as native from '../../native';
import type { SetFilterRequest } from '../../proto/gen/iofilter/v1/SetFilterRequest';
import { fakeCgroups, FakeCgroups } from '../helpers/fake-cgroups';
import { fakeKernel, fakeSysfs } from '../helpers/fake-kernel';

const K = 4096n;
const ext = (physical: bigint, length: bigint, flags: string[] = [], logical = 0n) => ({ logical, physical, length, flags });
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-files-rpc-'));
const kernel = fakeKernel();
/** A real file (the agent stats it) whose FIEMAP answer is scripted; returns its path. */
function file(name: string, answer: native.FileExtents | { code: string; message: string }): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, 'x');
  kernel.files.set(fs.realpathSync(p), answer);
  return p;
}
// on 7:1 (loop0p1, 131072 sectors): file offsets 0-8K at sectors 16-31, 8K-12K at 80-87
const A = file('a', { dev: { major: 7, minor: 1 }, size: 12288n, extents: [ext(2n * K, K), ext(3n * K, K, [], K), ext(10n * K, K, ['last'], 2n * K)] });
const B = file('b', { dev: { major: 7, minor: 1 }, size: 4096n, extents: [ext(40n * K, K, ['last'])] });
const PREALLOC = file('prealloc', { dev: { major: 7, minor: 1 }, size: 1048576n, extents: [ext(100n * K, 256n * K, ['unwritten', 'last'])] });
const EMPTY = file('empty', { dev: { major: 7, minor: 1 }, size: 0n, extents: [] });
const FRAGMENTED = file('fragmented', { dev: { major: 7, minor: 0 }, size: 65n * K, extents: Array.from({ length: 65 }, (_, i) => ext(BigInt(2 * i) * K, K, [], BigInt(i) * K)) });
const PAST_END = file('past-end', { dev: { major: 7, minor: 1 }, size: K, extents: [ext(131072n * 512n, K, ['last'])] });
fs.mkdirSync(path.join(dir, 'sub'));

let agent: Agent;
let client: IoFilterClient;
let cg: FakeCgroups;
beforeAll(async () => {
  cg = fakeCgroups();
  const cfg = resolveConfig({ listen: '127.0.0.1:0', attach: 'observe', pinDir: '/sys/fs/bpf/unused' });
  agent = await createAgent(cfg, pino({ level: 'silent' }), kernel, fakeSysfs(), cg.resolver);
  client = new IoFilterClient(agent.address, { timeoutMs: 5000 });
});
afterAll(async () => {
  client.close();
  await agent.stop(1000);
  cg.cleanup();
  fs.rmSync(dir, { recursive: true, force: true });
});
afterEach(() => kernel.filterer!.clearFilters());

const R = ['OP_READ' as const];
const cases: [string, SetFilterRequest, keyof typeof status, RegExp, boolean][] = [
  // [what, request, code, message, whether FIEMAP may have run]
  ['device and file', { device: '7:1', file: A, wholeDeviceOps: R }, 'INVALID_ARGUMENT', /device "7:1" and file ".*\/a": give exactly one of device and file/, false],
  ['neither device nor file', { wholeDeviceOps: R }, 'INVALID_ARGUMENT', /device is empty: give MAJ:MIN \(e.g. 259:2\) or a \/dev path, or a file$/, false],
  ['file with ranges', { file: A, ranges: [{ start: 0, end: 7, ops: R }] }, 'INVALID_ARGUMENT', /ranges: a filter made from file ".*\/a" covers the file's extents; give its operations in whole_device_ops, without ranges/, false],
  ['file without ops', { file: A }, 'INVALID_ARGUMENT', /whole_device_ops: select at least one operation/, false],
  ['file with an unknown op', { file: A, wholeDeviceOps: ['OP_UNSPECIFIED'] }, 'INVALID_ARGUMENT', /whole_device_ops: unknown op "OP_UNSPECIFIED"/, false],
  ['a relative path', { file: 'data/a', wholeDeviceOps: R }, 'INVALID_ARGUMENT', /file "data\/a" must be an absolute path on the agent's host/, false],
  ['a path with a NUL byte', { file: `${A}\0.x`, wholeDeviceOps: R }, 'INVALID_ARGUMENT', /file is not a valid path/, false],
  ['a missing file', { file: path.join(dir, 'nope'), wholeDeviceOps: R }, 'NOT_FOUND', /file ".*\/nope" does not exist on this host/, false],
  ['a directory', { file: path.join(dir, 'sub'), wholeDeviceOps: R }, 'INVALID_ARGUMENT', /is a directory, not a regular file/, false],
  ['preallocated, never written', { file: PREALLOC, wholeDeviceOps: R }, 'FAILED_PRECONDITION', /extent 0 of ".*\/prealloc" \(file offset 0, 1048576 bytes\) is unwritten/, true],
  ['an empty file', { file: EMPTY, wholeDeviceOps: R }, 'FAILED_PRECONDITION', /has nothing on disk to filter/, true],
  ['more ranges than a filter holds', { file: FRAGMENTED, wholeDeviceOps: R }, 'RESOURCE_EXHAUSTED', /has 65 extents on disk, 65 sector ranges after merging adjacent ones; a filter holds at most 64 ranges/, true],
  ['extents beyond the device', { file: PAST_END, wholeDeviceOps: R }, 'INVALID_ARGUMENT', /ranges\[0\]: end 131079 is beyond the last sector 131071 of loop0p1/, true],
  ['a bad TTL with a good file', { file: A, wholeDeviceOps: R, ttlMs: -1 }, 'INVALID_ARGUMENT', /ttl_ms: -1 is negative/, true],
  ['a bad probability with a good file', { file: A, wholeDeviceOps: R, probability: 2 }, 'INVALID_ARGUMENT', /probability: 2 must be in \(0, 1\]/, true],
  ['a cgroup that does not exist', { file: A, wholeDeviceOps: R, cgroupPath: '/nope.slice' }, 'NOT_FOUND', /cgroup_path: "\/nope.slice": no cgroup/, true],
];

describe('SetFilter with a file: refusals change nothing', () => {
  test.each(cases)('%s -> %s', async (_what, req, code, msg, fiemap) => {
    const spy = jest.spyOn(kernel, 'fileExtents');
    const before = kernel.filterer!.puts;
    const err = await client.setFilter(req).then(() => null, (e) => e);
    expect(err).not.toBeNull();
    expect({ code: status[err.code], details: err.details }).toEqual({ code, details: expect.stringMatching(msg) });
    expect(kernel.filterer!.puts).toBe(before);
    if (!fiemap) expect(spy).not.toHaveBeenCalled(); // bad requests are refused before FIEMAP syncs the file
    spy.mockRestore();
  });
});

describe('SetFilter with a file: an ordinary filter on the device holding it', () => {
  test("one range per merged extent, on the file's device in its coordinates, with the ops, TTL, probability, max failures and events asked for", async () => {
    const f = await client.setFilter({ file: A, wholeDeviceOps: ['OP_READ', 'OP_WRITE'], ttlMs: 60_000, probability: 0.5, maxFailures: 7, eventsPerSecond: 10, eventsSpared: true }, 'full');
    expect(f).toMatchObject({ device: { major: 7, minor: 1, name: 'loop0p1', startSector: '2048' }, file: A, wholeDevice: false, hasExpiry: true, probability: 0.5, maxFailures: '7', eventsPerSecond: 10, eventsSpared: true });
    expect(f.ranges.map((r) => [r.start, r.end, [...r.ops].sort()])).toEqual([
      ['16', '31', ['OP_READ', 'OP_WRITE']],
      ['80', '87', ['OP_READ', 'OP_WRITE']],
    ]);
    const spec = kernel.filterer!.specs.at(-1)!;
    expect(spec).toMatchObject({ device: { major: 7, minor: 1 }, disk: { major: 7, minor: 0 }, offset: 2048n, ttlMs: 60_000, meta: { file: A } });
    const st = await client.status();
    expect(st.filters.map((x) => x.file)).toEqual([A]);
  });

  test('it replaces the unscoped filter of its device, as `set DEV` does, and `set DEV` replaces it in turn', async () => {
    const dev = await client.setFilter({ device: '7:1', wholeDeviceOps: R });
    const fromFile = await client.setFilter({ file: A, wholeDeviceOps: R });
    expect(fromFile.id).toBe(dev.id);
    expect((await client.status()).filters.map((x) => [x.id, x.file, x.ranges.length])).toEqual([[dev.id, A, 2]]);
    const other = await client.setFilter({ file: B, wholeDeviceOps: R });
    expect((await client.status()).filters.map((x) => [x.id, x.file, x.ranges[0].start])).toEqual([[other.id, B, '320']]);
    await client.setFilter({ device: '7:1', wholeDeviceOps: R });
    expect((await client.status()).filters.map((x) => [x.file, x.wholeDevice])).toEqual([['', true]]);
  });

  test('with a cgroup scope: a second filter on the device, next to the unscoped one; Status shows file and scope', async () => {
    await client.setFilter({ file: A, wholeDeviceOps: R });
    const scoped = await client.setFilter({ file: B, wholeDeviceOps: ['OP_WRITE'], cgroupPath: '/system.slice/db.service' });
    expect(scoped.cgroup).toMatchObject({ path: '/system.slice/db.service', id: String(cg.id('/system.slice/db.service')) });
    const st = await client.status();
    expect(st.filters.map((x) => [x.file, x.cgroup?.path ?? null])).toEqual([
      [A, null],
      [B, '/system.slice/db.service'],
    ]);
  });

  test('a fragmented file whose 65 extents touch is one range', async () => {
    const p = file('touching', { dev: { major: 7, minor: 0 }, size: 65n * K, extents: Array.from({ length: 65 }, (_, i) => ext(BigInt(i) * K, K, [], BigInt(i) * K)) });
    const f = await client.setFilter({ file: p, wholeDeviceOps: R }, 'full');
    expect(f.ranges.map((r) => [r.start, r.end])).toEqual([['0', String(65 * 8 - 1)]]);
  });
});

function capture(): Io & { stdout: string; stderr: string } {
  const io = { stdout: '', stderr: '', stdoutTty: false, stderrTty: false, out: (s: string) => void (io.stdout += s), err: (s: string) => void (io.stderr += s) };
  return io;
}

describe('iofilterctl set --file', () => {
  test('the request: file and whole_device_ops, with the other set flags', async () => {
    const p = parseArgs(['--host', 'db1', 'set', '--file', '/var/lib/db/data.1', '--read', '--write', '--ttl', '5m', '--max-failures', '3', '--cgroup', '/system.slice/db.service'], capture())!;
    let seen: unknown;
    await p.plan!.run(new Proxy({}, { get: () => async (arg: unknown) => void (seen = arg) }) as IoFilterClient);
    expect(seen).toEqual({ file: '/var/lib/db/data.1', wholeDeviceOps: ['OP_READ', 'OP_WRITE'], ttlMs: 300_000, maxFailures: 3, cgroupPath: '/system.slice/db.service' });
  });

  test.each([
    [['set', '--read'], /set: give DEV \(MAJ:MIN or a \/dev path\) or --file PATH/],
    [['set', '7:0', '--file', '/x', '--read'], /set: give either DEV or --file PATH, not both/],
    [['set', '--file', '/x', '--range', '0-7', '--read'], /set: --range cannot be used with --file \(the file's extents are the ranges\)/],
    [['set', '--file', 'rel/x', '--read'], /bad --file "rel\/x": give an absolute path on the agents' hosts/],
    [['set', '--file', '/x'], /set: select at least one operation/],
  ])('usage error %j: exit 1, nothing sent', async (argv, msg) => {
    const io = capture();
    expect(await runCli(['--host', '127.0.0.1:1', ...argv], io)).toBe(1);
    expect(io.stdout).toBe('');
    expect(io.stderr).toMatch(msg);
  });

  test('the set line and the status table show the file; --json carries it', async () => {
    const ctl = async (...argv: string[]) => {
      const io = capture();
      const code = await runCli(['--host', agent.address, ...argv], io);
      return { code, out: io.stdout.split('\n').filter(Boolean).map((l) => l.slice(agent.address.length + 2)), raw: io.stdout };
    };
    const set = await ctl('set', '--file', A, '--read', '--ttl', '10m');
    const id = kernel.filterer!.filters[0].id;
    expect(set).toMatchObject({ code: 0, out: [`set loop0p1 (7:1), file ${A}: 16-31 read; 80-87 read; ttl 10m0s; filter ${id}`] });
    const st = await ctl('status');
    const esc = A.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
    expect(st.raw).toMatch(new RegExp(`│ ${id}\\s+│ loop0p1 \\(7:1\\)\\s+│ any\\s+│ 16-31\\s+│ read\\s+│ error EIO\\s+│ 0\\s+│ 0\\s+│ 10m0s\\s+│`));
    expect(st.raw).toMatch(new RegExp(`│\\s+│ file ${esc}\\s+│\\s+│\\s+│`));
    expect(st.raw).toMatch(/│\s+│\s+│\s+│ 80-87\s+│ read\s+│\s+│ 0\s+│ 0\s+│\s+│/);
    const json = JSON.parse((await ctl('--json', 'set', '--file', B, '--write')).raw);
    expect(json.value.filter).toMatchObject({ file: B, device: { name: 'loop0p1' } });
  });
});
