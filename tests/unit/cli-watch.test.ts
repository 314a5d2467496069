// `iofilterctl watch` against several in-process agents (fake kernels that deliver
// events) and a dead port: one merged stream with `host:` prefixes, --json objects
// with a host field, filters passed to the agents, losses and failing hosts on
// stderr while the others go on, the connect deadline, exit bits, and Ctrl-C ending
// it cleanly - in-process and as a real subprocess sent SIGINT.
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import pc from 'picocolors';
import pino from 'pino';
import { resolveConfig } from '../../agent/config';
import { Agent, createAgent } from '../../agent/server';
import { Io, parseArgs, runCli } from '../../client/cli';
import { eventLine, formatTime } from '../../client/watch';
import type { KernelEvent } from '../../agent/events';
import type { WatchEvent } from '../../proto/gen/iofilter/v1/WatchEvent';
import { FakeFilterer, fakeKernel, fakeSysfs, kernelEvent } from '../helpers/fake-kernel';
import { FakeAgent, startFakeAgent, stopFakeAgents } from '../helpers/fake-agent';
import { freePort } from '../helpers/common';
import { until } from '../helpers/wait';

const CLI = path.join(__dirname, '..', '..', 'dist', 'client', 'cli.js');
const sysfs = fakeSysfs();

interface Host {
  agent: Agent;
  kernel: ReturnType<typeof fakeKernel>;
  emit(...events: Partial<KernelEvent>[]): void;
}
async function startHost(): Promise<Host> {
  const kernel = fakeKernel();
  const agent = await createAgent(resolveConfig({ listen: '127.0.0.1:0', attach: 'observe', pinDir: '/x' }), pino({ level: 'silent' }), kernel, sysfs);
  return { agent, kernel, emit: (...events) => expect((kernel.filterer as FakeFilterer).emit(events.map(kernelEvent))).toBe(true) };
}

let hosts: Host[];
let dead: string;
beforeAll(async () => {
  hosts = [await startHost(), await startHost(), await startHost()];
  dead = `127.0.0.1:${await freePort()}`;
});
afterAll(async () => {
  await Promise.all(hosts.map((h) => h.agent.stop(1000)));
  fs.rmSync(sysfs, { recursive: true, force: true });
});

function capture() {
  const ac = new AbortController();
  const io: Io & { stdout: string; stderr: string; lines(): string[]; interrupt(): void } = {
    stdout: '', stderr: '', stdoutTty: false, stderrTty: false,
    out: (s) => void (io.stdout += s),
    err: (s) => void (io.stderr += s),
    trapInterrupt: () => ac.signal,
    lines: () => io.stdout.split('\n').filter(Boolean),
    interrupt: () => ac.abort(),
  };
  return io;
}
const watching = (hs: Host[], n = 1) => until(() => hs.every((h) => h.agent.hub.stats().watchers === n), `${n} watcher(s) on each agent`);
const addr = (h: Host) => h.agent.address;
const T = '2023-11-14T22:13:20.123456Z'; // kernelEvent()'s time, 1700000000123456789 ns

test('one merged stream, each line prefixed by its host; a dead host is reported on stderr and the others go on; Ctrl-C ends it', async () => {
  const [a, b, c] = hosts;
  const io = capture();
  const run = runCli(['--host', [addr(a), dead, addr(b), addr(c)].join(','), '--timeout', '5s', 'watch'], io);
  await watching(hosts);
  await until(() => io.stderr.includes(`${dead}: unreachable: `), 'the dead host on stderr');
  a.emit({ pid: 1, comm: 'dd' });
  b.emit({ pid: 2, comm: 'postgres', dev: { major: 7, minor: 1 }, devSector: 40n, sector: 2088n, nrSectors: 16, ops: ['read'], outcome: 'failed' });
  c.emit({ pid: 3, ops: ['write', 'flush'], outcome: 'spared', comm: 'kworker/u8:2' });
  await until(() => io.lines().length === 3, 'three event lines');
  expect(io.lines().sort()).toEqual([
    `${addr(a)}: ${T} loop0 100+8 write would-fail 1 dd`,
    `${addr(b)}: ${T} loop0p1 40+16 read failed 2 postgres`,
    `${addr(c)}: ${T} loop0 100+8 write,flush spared 3 kworker/u8:2`,
  ].sort());
  // a host that goes away mid-stream is reported; the others keep streaming
  await c.agent.stop(1000);
  await until(() => io.stderr.includes(`${addr(c)}: unreachable: stream dropped after 1 event(s): the agent is shutting down`), 'the dropped host on stderr');
  a.emit({ pid: 11 });
  await until(() => io.lines().length === 4, 'an event after the drop');
  expect(io.lines()[3]).toBe(`${addr(a)}: ${T} loop0 100+8 write would-fail 11 dd`);
  expect(io.stdout).not.toContain('unreachable'); // data only on stdout

  io.interrupt();
  expect(await run).toBe(4); // some host unreachable; the interrupted streams ended cleanly
  expect(io.stderr).toMatch(/^2 ok, 0 failed, 2 unreachable; 4 event\(s\), 0 lost \(4 hosts\)$/m);
  await watching(hosts.slice(0, 2), 0); // Ctrl-C cancelled the streams on the agents
  hosts[2] = await startHost();
});

test('--json: one object per event with a host field; filters are passed to each agent', async () => {
  const [a, b] = hosts;
  const io = capture();
  const run = runCli(['--json', '--host', `${addr(a)},${addr(b)}`, 'watch', '--device', '7:1', '--outcome', 'failed', '--outcome', 'spared', '--filter', '3'], io);
  await watching([a, b]);
  const p = { dev: { major: 7, minor: 1 }, sector: 2058n, devSector: 10n, filterId: 3 };
  a.emit({ ...p, outcome: 'failed', pid: 1 }, { ...p, outcome: 'would_fail', pid: 2 }, { ...p, filterId: 4, outcome: 'failed', pid: 3 }, { outcome: 'failed', filterId: 3, pid: 4 });
  b.emit({ ...p, outcome: 'spared', pid: 5 });
  await until(() => io.lines().length === 2, 'two JSON lines');
  // a last event proves the others were not merely late
  a.emit({ ...p, outcome: 'failed', pid: 6 });
  await until(() => io.lines().length === 3, 'the last JSON line');
  const objs = io.lines().map((l) => JSON.parse(l));
  expect(objs.map((o) => [o.host, o.pid]).sort()).toEqual([[addr(a), 1], [addr(a), 6], [addr(b), 5]].sort());
  expect(objs.find((o) => o.pid === 5)).toEqual({
    host: addr(b), timeUnixNs: '1700000000123456789',
    device: { major: 7, minor: 1, name: 'loop0p1', diskName: 'loop0', partition: true, sizeSectors: '131072', startSector: '2048' },
    disk: { major: 7, minor: 0, name: 'loop0', diskName: 'loop0', partition: false, sizeSectors: '2097152', startSector: '0' },
    sector: '2058', deviceSector: '10', nrSectors: 8, ops: ['OP_WRITE'], filterId: 3, rangeIndex: 0,
    outcome: 'OUTCOME_SPARED', pid: 5, comm: 'dd', cgroupId: '77',
  });
  io.interrupt();
  expect(await run).toBe(0);
  expect(io.stderr).toMatch(/^2 ok, 0 failed, 0 unreachable; 3 event\(s\), 0 lost \(2 hosts\)$/m);
  await watching([a, b], 0);
});

describe('against scripted agents', () => {
  let fakes: FakeAgent[] = [];
  afterEach(() => {
    stopFakeAgents(fakes);
    fakes = [];
  });

  test('losses go to stderr with their reason and count in the summary; a stream the agent ends is reported; all ended: exit 0', async () => {
    const io: { event: WatchEvent } = { event: { io: { timeUnixNs: '1700000000123456789', device: { major: 8, minor: 0, name: 'sda' }, deviceSector: '8', nrSectors: 1, ops: ['OP_WRITE'], outcome: 'OUTCOME_FAILED', pid: 9, comm: 'x' } } };
    const f = await startFakeAgent({ watch: [io.event, { lost: { count: 40, reason: 'slow client' } }, io.event, { lost: { count: 2, reason: 'kernel rate limit' } }] });
    fakes.push(f);
    const out = capture();
    expect(await runCli(['--host', f.address, 'watch'], out)).toBe(0);
    expect(out.lines()).toEqual([`${f.address}: ${T} sda 8+1 write failed 9 x`, `${f.address}: ${T} sda 8+1 write failed 9 x`]);
    expect(out.stderr.split('\n')).toEqual([
      `${f.address}: lost 40 event(s): slow client`,
      `${f.address}: lost 2 event(s): kernel rate limit`,
      `${f.address}: stream ended by the agent`,
      '1 ok, 0 failed, 0 unreachable; 2 event(s), 42 lost (1 host)',
      '',
    ]);
  });

  test('an agent that answers with an error (bit 2) and one that never accepts the stream within --timeout (bit 4): exit 6', async () => {
    const denied = await startFakeAgent({ behaviour: { code: grpc.status.PERMISSION_DENIED, details: 'identity "x" has no role on this agent' } });
    const hung = await startFakeAgent({ behaviour: 'hang' });
    fakes.push(denied, hung);
    const io = capture();
    expect(await runCli(['--host', `${denied.address},${hung.address}`, '--timeout', '300ms', 'watch'], io)).toBe(6);
    expect(io.stderr).toContain(`${denied.address}: error PERMISSION_DENIED: identity "x" has no role on this agent\n`);
    expect(io.stderr).toContain(`${hung.address}: unreachable: no answer within 300 ms\n`);
    expect(io.stdout).toBe('');
    expect(hung.calls.get('Watch')).toBe(1);
  });
});

test('usage errors are caught before any host is contacted', async () => {
  for (const [args, msg] of [
    [['watch', '--outcome', 'bogus'], /bad --outcome "bogus": use failed, would-fail or spared/],
    [['watch', '--filter', '0'], /bad --filter "0": must be at least 1/],
    [['watch', '--filter', '4294967296'], /filter ids go up to 4294967295/],
    [['watch', '--device', 'sda'], /device "sda" is neither MAJ:MIN \(e.g. 259:2\) nor a \/dev path/],
  ] as [string[], RegExp][]) {
    const io = capture();
    expect(await runCli(['--host', dead, ...args], io)).toBe(1);
    expect(io.stderr).toMatch(msg);
    expect(io.stdout).toBe('');
  }
  const p = parseArgs(['--host', 'db1', 'watch', '--device', '/dev/sda2', '--outcome', 'would-fail', '--filter', '12'], capture())!;
  expect(p.watch).toEqual({ device: '/dev/sda2', outcomes: ['OUTCOME_WOULD_FAIL'], filterId: 12 });
  expect(parseArgs(['--host', 'db1', 'watch'], capture())!.watch).toEqual({});
});

test('line format: microsecond UTC time, device name or numbers, comm kept on one line, colour only on a terminal', () => {
  expect(formatTime('1700000000000001999')).toBe('2023-11-14T22:13:20.000001Z');
  expect(formatTime('0')).toBe('1970-01-01T00:00:00.000000Z');
  const e = { timeUnixNs: '1700000000123456789', device: { major: 259, minor: 3 }, deviceSector: '18446744073709551615', nrSectors: 0, ops: [], outcome: 'OUTCOME_FAILED', pid: 1, comm: 'a b\nc' } as never;
  expect(eventLine('h:1', e, pc.createColors(false))).toBe(`h:1: ${T} 259:3 18446744073709551615+0 - failed 1 a?b?c`);
  expect(eventLine('h:1', e, pc.createColors(true))).toContain('\u001b[31mfailed');
});

describe('as a subprocess: SIGINT ends it cleanly', () => {
  const children: ChildProcess[] = [];
  afterAll(() => children.forEach((c) => c.exitCode === null && c.kill('SIGKILL')));

  function cli(args: string[]) {
    if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    const r = { stdout: '', stderr: '', code: new Promise<number | null>((res) => child.once('exit', (c) => res(c))) };
    child.stdout!.on('data', (d) => (r.stdout += d));
    child.stderr!.on('data', (d) => (r.stderr += d));
    return { child, r };
  }

  test.each([
    ['every host reachable: exit 0', false, 0, '2 ok, 0 failed, 0 unreachable; 2 event(s), 0 lost (2 hosts)'],
    ['a dead host among them: exit 4', true, 4, '2 ok, 0 failed, 1 unreachable; 2 event(s), 0 lost (3 hosts)'],
  ])('%s', async (_n, withDead, code, summaryLine) => {
    const [a, b] = hosts;
    const list = [addr(a), ...(withDead ? [dead] : []), addr(b)];
    const { child, r } = cli(['--host', list.join(','), 'watch']);
    await watching([a, b]);
    a.emit({ pid: 100 });
    b.emit({ pid: 200 });
    await until(() => r.stdout.split('\n').filter(Boolean).length === 2, 'two lines from the subprocess');
    expect(r.stdout.split('\n').filter(Boolean).sort()).toEqual([
      `${addr(a)}: ${T} loop0 100+8 write would-fail 100 dd`,
      `${addr(b)}: ${T} loop0 100+8 write would-fail 200 dd`,
    ].sort());
    if (withDead) await until(() => r.stderr.includes(`${dead}: unreachable`), 'the dead host on stderr');
    child.kill('SIGINT');
    expect(await r.code).toBe(code);
    expect(r.stderr.trim().split('\n').pop()).toBe(summaryLine);
    await watching([a, b], 0);
  });
});
