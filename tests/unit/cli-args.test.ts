// iofilterctl argument parsing (pure functions): hosts, durations, ranges, the request
// each command builds, and every usage error - caught before any network call (exit 1,
// message on stderr, nothing on stdout), in-process and through the built CLI.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { checkDevice, formatDuration, parseCount, parseDuration, parseHosts, parseProbability, parseRange } from '../../client/args';
import { UsageError } from '../../client/errors';
import { normalizeHost } from '../../client/hosts';
import { Io, parseArgs, runCli } from '../../client/cli';
import type { IoFilterClient } from '../../client';
import { ROOT } from '../helpers/common';
import { BUILT, builtReason, describeIf } from '../helpers/tier';

const CLI = path.join(ROOT, 'dist', 'client', 'cli.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-cli-args-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function capture(): Io & { stdout: string; stderr: string } {
  const io = { stdout: '', stderr: '', stdoutTty: false, stderrTty: false, out: (s: string) => void (io.stdout += s), err: (s: string) => void (io.stderr += s) };
  return io;
}

/** The request a parsed command would send, captured by a stand-in client. */
async function requestOf(argv: string[]): Promise<{ method: string; arg: unknown }> {
  const p = parseArgs(argv, capture())!;
  let seen: { method: string; arg: unknown } | undefined;
  const client = new Proxy({}, { get: (_t, method: string) => async (arg: unknown) => void (seen = { method, arg }) });
  await p.plan!.run(client as IoFilterClient);
  return seen!;
}

describe('hosts', () => {
  test.each([
    ['db1', 'db1:50051'],
    ['db1:7000', 'db1:7000'],
    ['db-1.example.com', 'db-1.example.com:50051'],
    ['node_7', 'node_7:50051'],
    ['10.1.2.3', '10.1.2.3:50051'],
    ['[::1]:7000', '[::1]:7000'],
    ['[::1]', '[::1]:50051'],
    ['::1', '[::1]:50051'],
    ['unix:/run/iofilter.sock', 'unix:/run/iofilter.sock'],
  ])('%s -> %s', (raw, want) => expect(normalizeHost(raw)).toBe(want));

  test.each(['db1:0', 'db1:70000', 'db1:x', 'bad host!', '[zz]:1', 'unix:', '', 'db1:'])('%p is refused', (raw) => {
    expect(() => normalizeHost(raw)).toThrow(UsageError);
  });

  test('repeatable, comma lists, hosts file with comments and blank lines; de-duplicated in order', () => {
    const f = path.join(tmp, 'hosts');
    fs.writeFileSync(f, '# fleet\ndb3\n\n   \ndb1:50051  # dup of db1\n db4:7000 \n[::1]:9\n');
    expect(parseHosts(['db1,db2', 'db1', 'db2:50051'], f)).toEqual(['db1:50051', 'db2:50051', 'db3:50051', 'db4:7000', '[::1]:9']);
  });
  test('no host at all, or an unreadable hosts file', () => {
    expect(() => parseHosts([])).toThrow(/no host/);
    expect(() => parseHosts([], path.join(tmp, 'missing'))).toThrow(/cannot read hosts file/);
    const empty = path.join(tmp, 'empty');
    fs.writeFileSync(empty, '# nothing\n\n');
    expect(() => parseHosts([], empty)).toThrow(/no host/);
  });
});

describe('values', () => {
  test.each([
    ['500ms', 500], ['30s', 30_000], ['5m', 300_000], ['1h', 3_600_000], ['1h30m', 5_400_000], ['10', 10_000], ['1.5s', 1500], ['0.25', 250],
  ])('duration %s = %d ms', (s, ms) => expect(parseDuration(s)).toBe(ms));
  test.each(['', '5x', 'm5', '1h 2m', '-1s', 's', '1e3', '99999999999999999999h'])('bad duration %p', (s) => expect(() => parseDuration(s)).toThrow(/bad duration/));
  test.each([[500, '500ms'], [61_000, '1m1s'], [3_600_000, '1h0m0s']])('formatDuration(%d) = %s', (ms, s) => expect(formatDuration(ms)).toBe(s));

  test('ranges: decimal sectors up to 2^64-1, kept as strings (no float rounding)', () => {
    expect(parseRange('0-18446744073709551615')).toEqual({ start: '0', end: '18446744073709551615' });
    expect(parseRange('9007199254740993-9007199254740993')).toEqual({ start: '9007199254740993', end: '9007199254740993' });
    expect(() => parseRange('0-18446744073709551616')).toThrow(/2\^64-1/);
    expect(() => parseRange('10-5')).toThrow(/start 10 > end 5/);
    for (const bad of ['10', '10-', '-5', '0x10-0x20', '1-2-3', '5..9', 'a-b', '-1-5']) expect(() => parseRange(bad)).toThrow(/bad range/);
  });
  test('devices: MAJ:MIN or a /dev path', () => {
    for (const ok of ['259:2', '7:0', '8:1048575', '/dev/nvme0n1p2', '/dev/mapper/vg-lv']) expect(checkDevice(ok)).toBe(ok);
    for (const bad of ['sda', '8:', ':1', '0:0', '4096:0', '8:1048576', '/dev/', 'dev/sda', '8:1:2']) expect(() => checkDevice(bad)).toThrow(UsageError);
  });
  test('probability in (0, 1], counts as whole numbers', () => {
    expect(parseProbability('0.25')).toBe(0.25);
    expect(parseProbability('1')).toBe(1);
    expect(parseProbability('1e-3')).toBe(0.001);
    for (const bad of ['0', '1.5', '-0.5', 'half', '', 'NaN', 'Infinity']) expect(() => parseProbability(bad)).toThrow(/bad probability/);
    expect(parseCount('18446744073709551615', 'K', 1)).toBe('18446744073709551615');
    expect(parseCount('3', 'K', 1)).toBe(3);
    expect(() => parseCount('18446744073709551616', 'K', 1)).toThrow(/at most/);
    expect(() => parseCount('1.5', 'K', 1)).toThrow(/whole number/);
  });
});

describe('parseArgs builds the request', () => {
  test('global defaults', () => {
    const p = parseArgs(['--host', 'db1', 'status'], capture())!;
    expect(p.hosts).toEqual(['db1:50051']);
    expect(p.opts).toEqual({ json: false, concurrency: 256, timeoutMs: 10_000 });
    expect(p.plan!.command).toBe('status');
  });
  test('global options may come after the command too', () => {
    const p = parseArgs(['status', '--host', 'db1', '--json', '--concurrency', '8', '--timeout', '500ms'], capture())!;
    expect(p.opts).toEqual({ json: true, concurrency: 8, timeoutMs: 500 });
  });
  test('`set 259:2 --write` fails all writes to the whole device', async () => {
    expect(await requestOf(['--host', 'db1', 'set', '259:2', '--write'])).toEqual({ method: 'setFilterResponse', arg: { device: '259:2', wholeDeviceOps: ['OP_WRITE'] } });
  });
  test('set with ranges: each range gets the selected ops; ttl, probability, max failures', async () => {
    const r = await requestOf([
      '--host', 'db1', 'set', '/dev/nvme0n1p2', '--read', '--write-zeroes', '--flush', '--discard', '--range', '0-2047', '--range', '100000-18446744073709551615',
      '--ttl', '5m', '--probability', '0.5', '--max-failures', '10',
    ]);
    const ops = ['OP_READ', 'OP_FLUSH', 'OP_DISCARD', 'OP_WRITE_ZEROES'];
    expect(r).toEqual({
      method: 'setFilterResponse',
      arg: { device: '/dev/nvme0n1p2', ranges: [{ start: '0', end: '2047', ops }, { start: '100000', end: '18446744073709551615', ops }], ttlMs: 300_000, probability: 0.5, maxFailures: 10 },
    });
  });
  test('set --events N and --events-spared: the kernel event rate for watch, and spared I/O too', async () => {
    expect(await requestOf(['--host', 'db1', 'set', '7:0', '--write', '--events', '0'])).toEqual({ method: 'setFilterResponse', arg: { device: '7:0', wholeDeviceOps: ['OP_WRITE'], eventsPerSecond: 0 } });
    expect(await requestOf(['--host', 'db1', 'set', '7:0', '--write', '--probability', '0.1', '--events', '50', '--events-spared'])).toEqual({
      method: 'setFilterResponse',
      arg: { device: '7:0', wholeDeviceOps: ['OP_WRITE'], probability: 0.1, eventsPerSecond: 50, eventsSpared: true },
    });
  });
  test('attach --mode, detach, delete', async () => {
    expect(await requestOf(['--host', 'db1', 'attach'])).toEqual({ method: 'attach', arg: 'auto' });
    expect(await requestOf(['--host', 'db1', 'attach', '--mode', 'observe'])).toEqual({ method: 'attach', arg: 'observe' });
    expect(await requestOf(['--host', 'db1', 'detach'])).toMatchObject({ method: 'detach' });
    expect(await requestOf(['--host', 'db1', 'delete', '8:16'])).toEqual({ method: 'deleteFilter', arg: { device: '8:16' } });
  });
  test('--version prints the package version on stdout, exit 0', async () => {
    const io = capture();
    expect(await runCli(['--version'], io)).toBe(0);
    expect(io.stdout.trim()).toBe(JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version);
    expect(io.stderr).toBe('');
  });

  test('--help is not an error: exit 0, help on stdout', async () => {
    const io = capture();
    expect(await runCli(['--help'], io)).toBe(0);
    expect(io.stdout).toMatch(/Usage: iofilterctl/);
    expect(io.stdout).toMatch(/Exit code, bitwise/);
    const sub = capture();
    expect(await runCli(['set', '--help'], sub)).toBe(0);
    expect(sub.stdout).toMatch(/--write-zeroes/);
  });
});

describe('usage errors: exit 1 before any network call, message on stderr, nothing on stdout', () => {
  // 127.0.0.1:1 would be refused at once if anything tried to connect; the exit code
  // would then be 4, not 1.
  const H = ['--host', '127.0.0.1:1'];
  test.each([
    ['unknown flag', [...H, '--bogus', 'status'], /unknown option '--bogus'/],
    ['unknown flag of a command', [...H, 'set', '7:0', '--write', '--wirte'], /unknown option '--wirte'/],
    ['unknown command', [...H, 'frobnicate'], /unknown command 'frobnicate'/],
    ['no command (usage on stderr)', [...H], /Usage: iofilterctl/],
    ['no host', ['status'], /no host/],
    ['empty --host', ['--host', ',', 'status'], /no host/],
    ['bad host', ['--host', 'db1:99999', 'status'], /port must be 1-65535/],
    ['unreadable hosts file', ['--hosts-file', '/nonexistent/hosts', 'status'], /cannot read hosts file/],
    ['bad DEV', [...H, 'set', 'sda', '--write'], /device "sda" is neither MAJ:MIN/],
    ['bad DEV "8:"', [...H, 'delete', '8:'], /device "8:"/],
    ['DEV 0:0', [...H, 'set', '0:0', '--write'], /0:0/],
    ['missing DEV', [...H, 'delete'], /delete: give DEV .* or --id N/],
    ['no op for set', [...H, 'set', '7:0'], /select at least one operation/],
    ['no op for set, with a range', [...H, 'set', '7:0', '--range', '0-7'], /select at least one operation/],
    ['start > end', [...H, 'set', '7:0', '--write', '--range', '10-5'], /start 10 > end 5/],
    ['bad range syntax', [...H, 'set', '7:0', '--write', '--range', '10..20'], /bad range "10..20"/],
    ['range past 2^64-1', [...H, 'set', '7:0', '--write', '--range', '0-18446744073709551616'], /2\^64-1/],
    ['bad duration', [...H, 'set', '7:0', '--write', '--ttl', '5 minutes'], /bad TTL "5 minutes"/],
    ['an event rate over the bound', [...H, 'set', '7:0', '--write', '--events', '1000001'], /bad --events "1000001": must be at most 1000000 events per second/],
    ['a negative event rate', [...H, 'set', '7:0', '--write', '--events', '-1'], /bad --events "-1": must be a whole number/],
    ['zero TTL', [...H, 'set', '7:0', '--write', '--ttl', '0s'], /must be positive/],
    ['bad probability', [...H, 'set', '7:0', '--write', '--probability', '1.5'], /bad probability "1.5"/],
    ['probability 0', [...H, 'set', '7:0', '--write', '--probability', '0'], /bad probability "0"/],
    ['bad max-failures', [...H, 'set', '7:0', '--write', '--max-failures', '-1'], /bad --max-failures/],
    ['max-failures 0', [...H, 'set', '7:0', '--write', '--max-failures', '0'], /bad --max-failures "0": must be at least 1/],
    ['bad timeout', ['--timeout', 'soon', ...H, 'status'], /bad --timeout "soon"/],
    ['timeout too long', ['--timeout', '30d', ...H, 'status'], /at most 24h/],
    ['bad concurrency 0', ['--concurrency', '0', ...H, 'status'], /bad --concurrency "0"/],
    ['bad concurrency word', ['--concurrency', 'many', ...H, 'status'], /bad --concurrency "many"/],
    ['bad attach mode', [...H, 'attach', '--mode', 'turbo'], /argument 'turbo' is invalid/],
    ['partial TLS', ['--tls-ca', '/x', ...H, 'status'], /TLS needs all of/],
    ['unreadable TLS file', ['--tls-ca', '/nonexistent/ca', '--tls-cert', '/x', '--tls-key', '/y', ...H, 'status'], /cannot read --tls-ca/],
  ])('%s', async (_name, argv, msg) => {
    const io = capture();
    expect(await runCli(argv as string[], io)).toBe(1);
    expect(io.stdout).toBe('');
    expect(io.stderr).toMatch(msg);
  });

  async function sub(...args: string[]) {
    return promisify(execFile)(process.execPath, [CLI, ...args]).then(
      (r) => ({ code: 0, ...r }),
      (e) => ({ code: e.code as number, stdout: e.stdout as string, stderr: e.stderr as string }),
    );
  }
  describeIf(builtReason(BUILT.cli))('as a subprocess (dist/client/cli.js)', () => {
    test.each([
      ['start > end', ['--host', '127.0.0.1:1', 'set', '7:0', '--range', '5-1', '--write'], /start 5 > end 1/],
      ['unknown flag', ['--host', '127.0.0.1:1', '--frobnicate', 'status'], /unknown option '--frobnicate'/],
      ['no host', ['status'], /no host/],
      ['--json does not change it', ['--json', '--host', '127.0.0.1:1', 'set', '7:0'], /select at least one operation/],
    ])('%s -> exit 1, stdout empty', async (_n, args, msg) => {
      const r = await sub(...(args as string[]));
      expect(r).toMatchObject({ code: 1, stdout: '' });
      expect(r.stderr).toMatch(msg);
    });
  });
});

describe('views and packed ranges (issue 25)', () => {
  /** The method a parsed command calls and every argument it passes. */
  async function callOf(argv: string[]): Promise<{ method: string; args: unknown[] }> {
    const p = parseArgs(argv, capture())!;
    let seen: { method: string; args: unknown[] } | undefined;
    const client = new Proxy({}, { get: (_t, method: string) => async (...args: unknown[]) => void (seen = { method, args }) });
    await p.plan!.run(client as IoFilterClient);
    return seen!;
  }
  test('set asks for the FULL answer: it shows the filter as stored, every range included', async () => {
    expect(await callOf(['--host', 'db1', 'set', '7:0', '--write', '--range', '0-7'])).toEqual({ method: 'setFilterResponse', args: [{ device: '7:0', ranges: [{ start: '0', end: '7', ops: ['OP_WRITE'] }] }, 'full'] });
  });
  test('set with 64 ranges or more sends them packed (version 1, 17 bytes each)', async () => {
    const r = await callOf(['--host', 'db1', 'set', '7:0', '--write', ...Array.from({ length: 64 }, (_, i) => ['--range', `${i * 8}-${i * 8 + 7}`]).flat()]);
    const req = r.args[0] as { ranges: unknown[]; packedRanges: Buffer };
    expect(req.ranges).toEqual([]);
    expect(req.packedRanges.length).toBe(1 + 64 * 17);
    expect(req.packedRanges[0]).toBe(1);
    expect(r.args[1]).toBe('full');
  });
  test('status is FULL unless --view basic', async () => {
    expect(await callOf(['--host', 'db1', 'status'])).toEqual({ method: 'status', args: ['full'] });
    expect(await callOf(['--host', 'db1', 'status', '--view', 'basic'])).toEqual({ method: 'status', args: ['basic'] });
    const io = capture();
    expect(() => parseArgs(['--host', 'db1', 'status', '--view', 'some'], io)).toThrow();
    expect(io.stderr).toMatch(/--view <view>' argument 'some' is invalid\. Allowed choices are basic, full/);
  });
});
