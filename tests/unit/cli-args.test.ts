// iofilterctl argument parsing: hosts, durations, ranges, and every usage error,
// caught before any network call (exit 1, nothing on stdout).
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { normalizeHost, parseDuration, parseHosts, parseRange, UsageError } from '../../client/args';
import { Io, parseArgs, runCli } from '../../client/cli';

const CLI = path.join(__dirname, '..', '..', 'dist', 'client', 'cli.js');

function capture(): Io & { stdout: string; stderr: string } {
  const io = { stdout: '', stderr: '', stdoutTty: false, stderrTty: false, out: (s: string) => void (io.stdout += s), err: (s: string) => void (io.stderr += s) };
  return io;
}

describe('hosts', () => {
  test.each([
    ['db1', 'db1:50051'],
    ['db1:7000', 'db1:7000'],
    ['10.1.2.3', '10.1.2.3:50051'],
    ['[::1]:7000', '[::1]:7000'],
    ['[::1]', '[::1]:50051'],
    ['::1', '[::1]:50051'],
    ['unix:/run/iofilter.sock', 'unix:/run/iofilter.sock'],
  ])('%s -> %s', (raw, want) => expect(normalizeHost(raw)).toBe(want));

  test.each(['db1:0', 'db1:70000', 'db1:x', 'bad_host!', '[zz]:1', 'unix:'])('%s is refused', (raw) => {
    expect(() => normalizeHost(raw)).toThrow(UsageError);
  });

  test('repeatable, comma lists, hosts file with comments; de-duplicated in order', () => {
    const f = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'iof-hosts-')), 'hosts');
    fs.writeFileSync(f, '# fleet\ndb3\n\ndb1:50051  # dup of db1\n db4:7000 \n');
    expect(parseHosts(['db1,db2', 'db1'], f)).toEqual(['db1:50051', 'db2:50051', 'db3:50051', 'db4:7000']);
  });
});

describe('values', () => {
  test.each([
    ['500ms', 500], ['30s', 30_000], ['5m', 300_000], ['1h', 3_600_000], ['1h30m', 5_400_000], ['10', 10_000], ['1.5s', 1500],
  ])('duration %s = %d ms', (s, ms) => expect(parseDuration(s)).toBe(ms));
  test.each(['', '5x', 'm5', '1h 2m', '-1s'])('bad duration %p', (s) => expect(() => parseDuration(s)).toThrow(/bad duration/));
  test('ranges up to 2^64-1, kept as strings', () => {
    expect(parseRange('0-18446744073709551615')).toEqual({ start: '0', end: '18446744073709551615' });
    expect(() => parseRange('0-18446744073709551616')).toThrow(/2\^64-1/);
  });
});

describe('parseArgs builds the request', () => {
  test('`set 259:2 --write` fails all writes to the whole device', () => {
    const p = parseArgs(['--host', 'db1', 'set', '259:2', '--write'], capture())!;
    expect(p.hosts).toEqual(['db1:50051']);
    expect(p.opts).toMatchObject({ timeoutMs: 10_000, concurrency: 64 });
  });
});

describe('usage errors: exit 1 before any network call, message on stderr, nothing on stdout', () => {
  // 127.0.0.1:1 would be refused at once if anything tried to connect; the exit code
  // would then be 4, not 1.
  const H = ['--host', '127.0.0.1:1'];
  test.each([
    ['unknown flag', [...H, '--bogus', 'status'], /unknown option '--bogus'/],
    ['unknown command', [...H, 'frobnicate'], /unknown command 'frobnicate'/],
    ['no command (usage on stderr)', [...H], /Usage: iofilterctl/],
    ['no host', ['status'], /no host/],
    ['bad host', ['--host', 'db1:99999', 'status'], /port must be 1-65535/],
    ['bad DEV', [...H, 'set', 'sda', '--write'], /device "sda": give MAJ:MIN/],
    ['bad DEV "8:"', [...H, 'delete', '8:'], /device "8:"/],
    ['DEV 0:0', [...H, 'set', '0:0', '--write'], /0:0/],
    ['no op for set', [...H, 'set', '7:0'], /select at least one operation/],
    ['start > end', [...H, 'set', '7:0', '--write', '--range', '10-5'], /start 10 > end 5/],
    ['bad range syntax', [...H, 'set', '7:0', '--write', '--range', '10..20'], /bad range "10..20"/],
    ['bad duration', [...H, 'set', '7:0', '--write', '--ttl', '5 minutes'], /bad TTL "5 minutes"/],
    ['zero TTL', [...H, 'set', '7:0', '--write', '--ttl', '0s'], /must be positive/],
    ['bad probability', [...H, 'set', '7:0', '--write', '--probability', '1.5'], /bad probability "1.5"/],
    ['probability 0', [...H, 'set', '7:0', '--write', '--probability', '0'], /bad probability "0"/],
    ['bad max-failures', [...H, 'set', '7:0', '--write', '--max-failures', '-1'], /bad --max-failures/],
    ['bad timeout', ['--timeout', 'soon', ...H, 'status'], /bad --timeout "soon"/],
    ['bad concurrency', ['--concurrency', '0', ...H, 'status'], /bad --concurrency "0"/],
    ['bad attach mode', [...H, 'attach', '--mode', 'turbo'], /argument 'turbo' is invalid/],
    ['partial TLS', ['--tls-ca', '/x', ...H, 'status'], /TLS needs all of/],
    ['missing DEV', [...H, 'delete'], /missing required argument 'dev'/],
  ])('%s', async (_name, argv, msg) => {
    const io = capture();
    expect(await runCli(argv as string[], io)).toBe(1);
    expect(io.stdout).toBe('');
    expect(io.stderr).toMatch(msg);
  });

  const d = fs.existsSync(CLI) ? test : test.skip;
  d('as a subprocess: exit status 1, stdout empty', async () => {
    const r = await promisify(execFile)(process.execPath, [CLI, '--host', '127.0.0.1:1', 'set', '7:0', '--range', '5-1', '--write']).then(
      () => ({ code: 0, stdout: '', stderr: '' }),
      (e) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
    );
    expect(r).toMatchObject({ code: 1, stdout: '' });
    expect(r.stderr).toMatch(/start 5 > end 1/);
  });
});
