// iofilterctl end to end in-process against fake agents (no root): one `host:` line
// per host in the order given whatever the completion order, --json alone on stdout,
// the summary on stderr, colours only on a terminal, and the exit-code bits.
import * as grpc from '@grpc/grpc-js';
import { Io, runCli } from '../../client/cli';
import { exitCode, jsonLine, summary } from '../../client/render';
import type { HostResult } from '../../client';
import { FakeAgent, startFakeAgent, stopFakeAgents } from '../helpers/fake-agent';
import { freePort } from '../helpers/common';

function capture(tty = false): Io & { stdout: string; stderr: string } {
  const io = { stdout: '', stderr: '', stdoutTty: tty, stderrTty: false, out: (s: string) => void (io.stdout += s), err: (s: string) => void (io.stderr += s) };
  return io;
}
const ESC = '\u001b[';

let slow: FakeAgent, fast: FakeAgent, failing: FakeAgent, dead: string;
beforeAll(async () => {
  slow = await startFakeAgent({ delayMs: 300 });
  fast = await startFakeAgent({ delayMs: 1 });
  failing = await startFakeAgent({ behaviour: { code: grpc.status.NOT_FOUND, details: 'no block device 7:99' }, delayMs: 1 });
  dead = `127.0.0.1:${await freePort()}`;
});
afterAll(() => stopFakeAgents([slow, fast, failing]));

test('lines come in the order hosts were given, not completion order; exit 0; summary on stderr', async () => {
  const io = capture();
  expect(await runCli(['--host', `${slow.address},${fast.address}`, 'set', '7:0', '--write', '--range', '0-99', '--ttl', '10m'], io)).toBe(0);
  expect(io.stdout.split('\n')).toEqual([
    `${slow.address}: set loop0 (7:0): 0-99 write; ttl 10m0s`,
    `${fast.address}: set loop0 (7:0): 0-99 write; ttl 10m0s`,
    '',
  ]);
  // the slowest host's time in any unit formatDuration uses: a slow machine may take seconds
  expect(io.stderr).toMatch(/^2 ok, 0 failed, 0 unreachable \(2 hosts, slowest (\d+ms|(\d+h)?(\d+m)?\d+s)\)\n$/);
  expect(io.stdout).not.toContain(ESC); // not a terminal: no colour
});

test('status: a header line per host and "no filters"; colour only when stdout is a terminal', async () => {
  const plain = capture();
  expect(await runCli(['--host', fast.address, 'status'], plain)).toBe(0);
  const lines = plain.stdout.trim().split('\n');
  expect(lines[0]).toBe(`${fast.address}: ${fast.address} kernel 6.1.0-fake; attached observe (tp_btf/block_bio_queue); fmod_ret no, observe yes; agent 0.0.0-fake`);
  expect(lines).toContain(`${fast.address}:   fmod_ret: no CONFIG_FUNCTION_ERROR_INJECTION`);
  expect(lines).toContain(`${fast.address}:   no filters`);
  expect(lines.every((l) => l.startsWith(`${fast.address}: `))).toBe(true);
  const tty = capture(true);
  await runCli(['--host', fast.address, 'status'], tty);
  expect(tty.stdout).toContain(ESC);
  const json = capture(true);
  await runCli(['--json', '--host', fast.address, 'status'], json);
  expect(json.stdout).not.toContain(ESC); // --json is never coloured
});

test('status renders filters as a table with counters and TTL', async () => {
  const withFilters = await startFakeAgent({
    delayMs: 1,
    status: {
      state: { attached: true, mode: 'MODE_FMOD_RET', hook: 'fmod_ret/should_fail_bio' },
      filters: [{
        device: { major: 259, minor: 2, name: 'nvme0n1p2' }, wholeDevice: false, hasExpiry: true, remainingMs: 581_000, probability: 1, maxFailures: 0,
        ranges: [{ start: 0, end: 2047, ops: ['OP_WRITE'], matched: 12, failed: 12 }, { start: 100000, end: 100511, ops: ['OP_READ', 'OP_WRITE'], matched: 0, failed: 0 }],
      }],
    },
  });
  try {
    const io = capture();
    expect(await runCli(['--host', withFilters.address, 'status'], io)).toBe(0);
    expect(io.stdout).toMatch(/│ id\s+│ device\s+│ cgroup\s+│ ranges \(sectors\)\s+│ ops\s+│ fault\s+│ matched\s+│ failed\s+│ ttl left/);
    expect(io.stdout).toMatch(/│\s+│ nvme0n1p2 \(259:2\)\s+│ any\s+│ 0-2047\s+│ write\s+│ error EIO\s+│ 12\s+│ 12\s+│ 9m41s/);
    expect(io.stdout).toMatch(/│\s+│\s+│\s+│ 100000-100511\s+│ read,write\s+│\s+│ 0\s+│ 0\s+│/);
  } finally {
    stopFakeAgents([withFilters]);
  }
});

test('--json: one parseable object per host per line, nothing else on stdout', async () => {
  const io = capture();
  const code = await runCli(['--json', '--host', [slow.address, dead, failing.address, fast.address].join(','), 'delete', '7:0'], io);
  expect(code).toBe(6);
  const objs = io.stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
  expect(objs.map((o) => [o.host, o.ok])).toEqual([[slow.address, true], [dead, false], [failing.address, false], [fast.address, true]]);
  expect(objs[0].value).toMatchObject({ existed: true });
  expect(objs[1].error).toMatchObject({ code: 'UNAVAILABLE', kind: 'unreachable' });
  expect(objs[2].error).toEqual({ code: 'NOT_FOUND', message: 'no block device 7:99', kind: 'error' });
  expect(io.stderr).toMatch(/^2 ok, 1 failed, 1 unreachable/);
});

test.each([
  ['an error answer', () => [failing.address], 2, /error NOT_FOUND: no block device 7:99/],
  ['no answer', () => [dead], 4, /unreachable: /],
  ['both', () => [fast.address, failing.address, dead], 6, /error NOT_FOUND/],
])('exit bits: %s', async (_n, hosts, code, line) => {
  const io = capture();
  expect(await runCli(['--host', hosts().join(','), '--timeout', '2s', 'detach'], io)).toBe(code);
  expect(io.stdout).toMatch(line);
});

test('pure pieces: summary, exit code, JSON line', () => {
  const r: HostResult<unknown>[] = [
    { host: 'a:1', ok: true, value: { n: '18446744073709551615' }, ms: 1 },
    { host: 'b:1', ok: false, error: { code: 'NOT_FOUND', message: 'x', kind: 'error' }, ms: 1 },
    { host: 'c:1', ok: false, error: { code: 'DEADLINE_EXCEEDED', message: 'y', kind: 'unreachable' }, ms: 1 },
  ];
  expect(summary(r)).toBe('1 ok, 1 failed, 1 unreachable');
  expect([exitCode([]), exitCode(r.slice(0, 1)), exitCode(r.slice(0, 2)), exitCode([r[2]]), exitCode(r)]).toEqual([0, 0, 2, 4, 6]);
  expect(JSON.parse(jsonLine(r[0]))).toEqual({ host: 'a:1', ok: true, value: { n: '18446744073709551615' }, ms: 1 });
});

test('a host is printed as soon as every host before it has answered, not when the whole fleet is done', async () => {
  // the second host never answers on its own: it is shut down only once the first host's
  // line is out. Held output would wait for its 20 s deadline instead (DEADLINE_EXCEEDED).
  const hang = await startFakeAgent({ behaviour: 'hang' });
  const io = capture();
  const out = io.out;
  io.out = (s) => {
    out(s);
    if (s.startsWith(`{"host":"${fast.address}"`)) hang.server.forceShutdown();
  };
  expect(await runCli(['--host', `${fast.address},${hang.address}`, '--timeout', '20s', '--json', 'status'], io)).toBe(4);
  const [first, second] = io.stdout.trim().split('\n').map((l) => JSON.parse(l));
  expect(first).toMatchObject({ host: fast.address, ok: true });
  expect(second).toMatchObject({ host: hang.address, ok: false, error: { kind: 'unreachable' } });
  expect(second.error.code).not.toBe('DEADLINE_EXCEEDED');
}, 60_000);
