// `iofilterctl run` with file targets and cgroup scopes, against fake agents (no root):
// what --dry-run and the set/delete lines say, and exactly which DeleteFilter requests
// the cleanup sends - after answered sets, the device and cgroup id the agent answered
// with; after a set that got no answer, the request's own device and scope, a file's
// device and a pid's cgroup taken from Status, never a pid.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Io, runCli } from '../../client/cli';
import type { Filter } from '../../proto/gen/iofilter/v1/Filter';
import { FakeAgent, FakeAgentOptions, startFakeAgent, stopFakeAgents } from '../helpers/fake-agent';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-run-scope-'));
const agents: FakeAgent[] = [];
afterAll(() => {
  stopFakeAgents(agents);
  fs.rmSync(tmp, { recursive: true, force: true });
});

function capture(): Io & { stdout: string; stderr: string } {
  const io = { stdout: '', stderr: '', stdoutTty: false, stderrTty: false, out: (s: string) => void (io.stdout += s), err: (s: string) => void (io.stderr += s) };
  return io;
}
async function fake(o: FakeAgentOptions): Promise<FakeAgent> {
  const a = await startFakeAgent({ delayMs: 1, ...o });
  agents.push(a);
  return a;
}
let planNo = 0;
function planFile(text: string): string {
  const f = path.join(tmp, `plan-${++planNo}.yaml`);
  fs.writeFileSync(f, text);
  return f;
}
const events = (io: { stdout: string }) => io.stdout.trim().split('\n').map((l) => JSON.parse(l));
/** A DeleteFilter request as the agent receives it (proto3 defaults filled in). */
const del = (r: { device?: string; cgroupPath?: string; cgroupId?: string; id?: number }) => ({ device: '', cgroupPath: '', cgroupId: '0', pid: 0, allScopes: false, id: 0, ...r });
const deletes = (a: FakeAgent) => a.requests.filter((r) => r.method === 'DeleteFilter').map((r) => r.req);
const calls = (a: FakeAgent) => Object.fromEntries(a.calls);

/** What an agent would answer: the device by number, the scope resolved to cgroup 1234 (from the pid, if one was given). */
function answer(req: { device: string; file: string; cgroupPath: string; cgroupId: string; pid: number; wholeDeviceOps: string[] }): Filter {
  const scoped = req.cgroupPath || req.cgroupId !== '0' || req.pid;
  return {
    device: { major: 8, minor: req.file ? 1 : 0, name: req.file ? 'sda1' : 'sda' },
    wholeDevice: true,
    ranges: [{ start: 0, end: 99, ops: req.wholeDeviceOps }],
    hasExpiry: true,
    remainingMs: 60_000,
    file: req.file,
    ...(scoped && { cgroup: { id: 1234, path: '/db', fromPid: req.pid } }),
    id: 3,
  };
}

test('--dry-run names each target and scope, and the plan event carries the request fields', async () => {
  const f = planFile(`hosts: [a]
steps:
  - set: [{ file: /var/lib/db/x, cgroup: /system.slice/db.service, ops: [read] }, { device: "8:0", pid: 42, ops: [write], ranges: ["0-9"] }, { device: /dev/sda, ops: [flush] }]
`);
  const io = capture();
  expect(await runCli(['run', f, '--dry-run'], io)).toBe(0);
  const sets = io.stdout.split('\n').filter((l) => l.startsWith('  set '));
  expect(sets).toEqual([
    expect.stringMatching(/^ {2}set \/var\/lib\/db\/x \(cgroup \/system\.slice\/db\.service\): whole file read; ttl \d+s$/),
    expect.stringMatching(/^ {2}set 8:0 \(the cgroup of pid 42\): 0-9 write; ttl \d+s$/),
    expect.stringMatching(/^ {2}set \/dev\/sda: whole device flush; ttl \d+s$/),
  ]);
  const json = capture();
  expect(await runCli(['--json', 'run', f, '--dry-run'], json)).toBe(0);
  expect(events(json)[0].steps[0].requests).toEqual([
    expect.objectContaining({ file: '/var/lib/db/x', cgroupPath: '/system.slice/db.service' }),
    expect.objectContaining({ device: '8:0', pid: 42 }),
    expect.not.objectContaining({ cgroupPath: expect.anything() }),
  ]);
});

test('answered sets: cleanup deletes by the device and cgroup id the agent answered with - one delete per filter, no Status, no pid, no path', async () => {
  const a = await fake({ filter: answer });
  const io = capture();
  const f = planFile(`hosts: [${a.address}]
steps:
  - name: one
    set: [{ file: /var/lib/db/x, cgroup: /system.slice/db.service, ops: [read] }, { device: /dev/sda, pid: 42, ops: [write] }, { device: /dev/sda, ops: [write] }]
  - name: two
    set: { file: /var/lib/db/x, cgroup: /system.slice/db.service, ops: [read, write] }
`);
  expect(await runCli(['run', f], io)).toBe(0);
  expect(calls(a)).toEqual({ SetFilter: 4, DeleteFilter: 3 });
  // the unscoped filter by the id of its answer: a delete by device is refused while scoped filters remain on it
  expect(deletes(a)).toEqual([del({ device: '8:1', cgroupId: '1234' }), del({ device: '8:0', cgroupId: '1234' }), del({ id: 3 })]);
  const cleanup = io.stdout.split('\n').filter((l) => l.includes('[cleanup]'));
  expect(cleanup).toEqual([
    `${a.address}: [cleanup] deleted filter on 8:1, cgroup id 1234: /var/lib/db/x (cgroup /system.slice/db.service)`,
    `${a.address}: [cleanup] deleted filter on 8:0, cgroup id 1234: /dev/sda (the cgroup of pid 42)`,
    `${a.address}: [cleanup] deleted filter on 8:0: /dev/sda`,
  ]);
  expect(io.stdout).toContain(`${a.address}: [one] set sda1 (8:1), file /var/lib/db/x, cgroup /db (id 1234): whole device read;`);
});

test('a path and MAJ:MIN naming one filter: one delete, both names', async () => {
  const a = await fake({ filter: answer });
  const io = capture();
  const f = planFile(`hosts: [${a.address}]\nsteps:\n  - { name: one, set: { device: /dev/sda, ops: [read] } }\n  - { name: two, set: { device: "8:0", ops: [write] } }\n`);
  expect(await runCli(['--json', 'run', f], io)).toBe(0);
  expect(deletes(a)).toEqual([del({ id: 3 })]);
  expect(events(io).find((e) => e.action === 'delete').value).toEqual([{ filter: '/dev/sda, 8:0', device: '8:0', existed: true }]);
});

test('an unscoped filter replaced by a later step: one delete, by the id of the last answer; scoped deletes go first', async () => {
  let next = 10;
  const a = await fake({ filter: (req) => ({ ...answer(req), id: next++ }) });
  const io = capture();
  const f = planFile(`hosts: [${a.address}]\nsteps:\n  - { name: one, set: { device: /dev/sda, ops: [read] } }\n  - { name: two, set: [{ device: /dev/sda, ops: [write] }, { device: /dev/sda, cgroup: /db, ops: [write] }] }\n`);
  expect(await runCli(['--json', 'run', f], io)).toBe(0);
  expect(deletes(a)).toEqual([del({ device: '8:0', cgroupId: '1234' }), del({ id: 11 })]);
});

const gone = (f: Partial<Filter>): Filter => ({ wholeDevice: true, ranges: [{ start: 0, end: 7, ops: ['OP_READ'] }], ...f });
test.each([
  [
    'a file with a cgroup path: the device of each filter made from the file with a scope; the path, for the agent to resolve',
    '{ file: /x, cgroup: /db, ops: [read] }',
    [gone({ file: '/x', device: { major: 8, minor: 1 }, cgroup: { id: 77, path: '/db' } }), gone({ file: '/y', device: { major: 8, minor: 2 }, cgroup: { id: 77 } }), gone({ file: '/x', device: { major: 8, minor: 3 } })],
    [del({ device: '8:1', cgroupPath: '/db' })],
    [{ filter: '/x (cgroup /db)', device: '8:1', scope: 'cgroup /db', existed: true }],
  ],
  [
    'an unscoped file: only its unscoped filters',
    '{ file: /x, ops: [read] }',
    [gone({ file: '/x', device: { major: 8, minor: 1 }, cgroup: { id: 3 } }), gone({ file: '/x', device: { major: 8, minor: 4 } })],
    [del({ device: '8:4' })],
    [{ filter: '/x', device: '8:4', existed: true }],
  ],
  [
    'a file with a cgroup id: only filters of that cgroup',
    '{ file: /x, cgroupId: 3, ops: [read] }',
    [gone({ file: '/x', device: { major: 8, minor: 1 }, cgroup: { id: 4 } }), gone({ file: '/x', device: { major: 8, minor: 5 }, cgroup: { id: 3 } })],
    [del({ device: '8:5', cgroupId: '3' })],
    [{ filter: '/x (cgroup id 3)', device: '8:5', scope: 'cgroup id 3', existed: true }],
  ],
  [
    'a device by number with a pid: the cgroup of its filter resolved from that pid',
    '{ device: "8:0", pid: 42, ops: [read] }',
    [gone({ device: { major: 8, minor: 0 }, cgroup: { id: 5, fromPid: 42 } }), gone({ device: { major: 8, minor: 0 }, cgroup: { id: 6, fromPid: 43 } }), gone({ device: { major: 8, minor: 9 }, cgroup: { id: 7, fromPid: 42 } })],
    [del({ device: '8:0', cgroupId: '5' })],
    [{ filter: '8:0 (the cgroup of pid 42)', device: '8:0', scope: 'cgroup id 5', existed: true }],
  ],
  [
    'a device by path with a pid: each cgroup Status shows resolved from that pid, on the path',
    '{ device: /dev/sda, pid: 42, ops: [read] }',
    [gone({ device: { major: 8, minor: 0 }, cgroup: { id: 5, fromPid: 42 } }), gone({ device: { major: 8, minor: 9 }, cgroup: { id: 7, fromPid: 42 } }), gone({ device: { major: 8, minor: 0 }, cgroup: { id: 6, fromPid: 43 } })],
    [del({ device: '/dev/sda', cgroupId: '5' }), del({ device: '/dev/sda', cgroupId: '7' })],
    [expect.objectContaining({ scope: 'cgroup id 5' }), expect.objectContaining({ scope: 'cgroup id 7' })],
  ],
  ['a file Status shows no filter of: nothing to delete, said so', '{ file: /z, ops: [read] }', [gone({ file: '/x', device: { major: 8, minor: 1 } })], [], [{ filter: '/z', existed: false }]],
])('a set that got no answer - %s', async (_what, set, filters, want, value) => {
  const a = await fake({ methods: { SetFilter: 'hang' }, status: { filters } });
  const io = capture();
  const code = await runCli(['--json', '--timeout', '300ms', 'run', planFile(`hosts: [${a.address}]\nsteps:\n  - set: ${set}\n`)], io);
  expect(code).toBe(4 | 8);
  expect(a.requests.map((r) => r.method)).toEqual(['SetFilter', 'Status', ...want.map(() => 'DeleteFilter')]);
  expect(deletes(a)).toEqual(want);
  const ev = events(io);
  expect(ev.find((e) => e.action === 'delete')).toMatchObject({ ok: true, value });
  expect(ev[ev.length - 1]).toMatchObject({ event: 'aborted', remaining: [] });
});

test('a set with a path scope that got no answer: deleted by its own device and scope, without Status', async () => {
  const a = await fake({ methods: { SetFilter: 'hang' } });
  const io = capture();
  expect(await runCli(['--timeout', '300ms', 'run', planFile(`hosts: [${a.address}]\nsteps:\n  - set: { device: /dev/sda, cgroup: /db, ops: [read] }\n`)], io)).toBe(4 | 8);
  expect(a.requests.map((r) => r.method)).toEqual(['SetFilter', 'DeleteFilter']);
  expect(deletes(a)).toEqual([del({ device: '/dev/sda', cgroupPath: '/db' })]);
  expect(io.stdout).toContain(`${a.address}: [cleanup] deleted filter on /dev/sda, cgroup /db: /dev/sda (cgroup /db)`);
});

test('no answer to the set nor to Status: the filter is left, named with its scope (exit 4|8|16); cleanup: keep names them too', async () => {
  const a = await fake({ methods: { SetFilter: 'hang', Status: 'hang' } });
  const io = capture();
  const f = planFile(`hosts: [${a.address}]\nsteps:\n  - set: { file: /var/lib/db/x, pid: 7, ops: [read] }\n`);
  expect(await runCli(['--json', '--timeout', '300ms', 'run', f], io)).toBe(4 | 8 | 16);
  expect(calls(a)).toEqual({ SetFilter: 1, Status: 1 });
  expect(events(io).pop()).toMatchObject({ event: 'aborted', remaining: [{ host: a.address, filters: ['/var/lib/db/x (the cgroup of pid 7)'] }] });

  const b = await fake({ filter: answer });
  const kept = capture();
  expect(await runCli(['run', planFile(`hosts: [${b.address}]\nsteps:\n  - set: [{ file: /x, cgroup: /db, ops: [read] }, { device: /dev/sda, ops: [read] }]\ncleanup: keep\n`)], kept)).toBe(0);
  expect(kept.stdout).toContain(`${b.address}: [left] /x (cgroup /db), /dev/sda: may stay in force until its TTL`);
  expect(calls(b)).toEqual({ SetFilter: 2 });
});
