#!/usr/bin/env node
// iofilterctl: drive iofilter agents on many hosts at once. Data on stdout (one
// `host:` line or block per host, or one JSON object per host with --json), progress
// and the summary on stderr. Exit code, bitwise: 1 usage/local error, 2 some host
// answered with an error, 4 some host was unreachable or timed out.
import { Command, CommanderError, Option } from 'commander';
import cliProgress from 'cli-progress';
import pc from 'picocolors';
import type { SetFilterRequest } from '../proto/gen/iofilter/v1/SetFilterRequest';
import { checkDevice, formatDuration, parseCount, parseDuration, parseHosts, parseProbability, parseRange, UsageError } from './args';
import type { AttachModeName, IoFilterClient } from './client';
import { HostResult, runFleet } from './fleet';
import { describeFilter, hostLines, jsonLine, statusLines, summary } from './render';

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
  stdoutTty: boolean;
  stderrTty: boolean;
}

const OPS = ['read', 'write', 'flush', 'discard', 'write-zeroes'] as const;

interface Plan {
  run: (c: IoFilterClient) => Promise<unknown>;
  render: (v: never) => string[];
}

/** Parses argv into hosts, options and a plan; throws UsageError/CommanderError. */
export function parseArgs(argv: string[], io: Io): { hosts: string[]; opts: Record<string, any>; plan: Plan } | null {
  let plan: Plan | undefined;
  const program = new Command('iofilterctl')
    .description('Block-device fault injection across a fleet of iofilter agents')
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .showSuggestionAfterError(true)
    .option('--host <host>', 'agent host[:port] (default port 50051); repeatable, comma lists', (v: string, p: string[]) => [...p, v], [] as string[])
    .option('--hosts-file <file>', 'one host per line, # comments')
    .option('--concurrency <n>', 'hosts worked on at once', '64')
    .option('--timeout <dur>', 'deadline per host (e.g. 5s, 500ms)', '10s')
    .option('--json', 'one JSON object per host on stdout, nothing else there')
    .option('--tls-ca <file>', 'CA that signed the agents\' certificates')
    .option('--tls-cert <file>', 'client certificate (its CN/SAN is your identity)')
    .option('--tls-key <file>', 'client private key');

  program
    .command('attach')
    .description('load and attach the program (idempotent)')
    .addOption(new Option('--mode <mode>', 'attach mode').choices(['auto', 'fmod_ret', 'kprobe', 'observe']).default('auto'))
    .action((o) => {
      plan = {
        run: (c) => c.attach(o.mode as AttachModeName),
        render: ((s: { mode: string; hook: string; adopted: boolean }) => [
          `attached ${s.mode.replace('MODE_', '').toLowerCase()} (${s.hook})${s.adopted ? ', adopted existing pins' : ''}`,
        ]) as Plan['render'],
      };
    });
  program
    .command('detach')
    .description('detach the program: every filter is gone, pins removed')
    .action(() => {
      plan = {
        run: (c) => c.detach(),
        render: ((r: { wasAttached: boolean; filtersRemoved: number }) => [
          r.wasAttached ? `detached; ${r.filtersRemoved} filter(s) removed` : 'was not attached',
        ]) as Plan['render'],
      };
    });
  program
    .command('status')
    .description('capabilities, attach state and every filter with its counters')
    .action(() => {
      plan = { run: (c) => c.status(), render: ((s) => statusLines(s, colors)) as Plan['render'] };
    });
  program
    .command('delete')
    .argument('<dev>', 'MAJ:MIN or /dev path')
    .description("remove the device's filter")
    .action((dev: string) => {
      checkDevice(dev);
      plan = {
        run: (c) => c.deleteFilter(dev),
        render: ((r: { existed: boolean }) => [r.existed ? `deleted filter on ${dev}` : `no filter on ${dev}`]) as Plan['render'],
      };
    });
  const set = program
    .command('set')
    .argument('<dev>', 'MAJ:MIN or /dev path (resolved on each host)')
    .description('fail the selected operations on DEV (whole device, or --range ...); replaces its filter')
    .option('--range <start-end>', '512-byte sectors, inclusive, in DEV\'s own coordinates; repeatable', (v: string, p: string[]) => [...p, v], [] as string[])
    .option('--ttl <dur>', 'the kernel stops failing I/O after this (default: the agent\'s default TTL)')
    .option('--probability <p>', 'fail about this share of matching I/O, in (0, 1]')
    .option('--max-failures <k>', 'fail only the first K matching I/Os');
  for (const op of OPS) set.option(`--${op}`, `fail ${op.replace('-', ' ')} I/O`);
  set.action((dev: string, o) => {
    checkDevice(dev);
    const ops = OPS.filter((op) => o[op.replace(/-(\w)/g, (_m: string, ch: string) => ch.toUpperCase())]).map((op) => `OP_${op.replace('-', '_').toUpperCase()}`);
    if (!ops.length) throw new UsageError('set: select at least one operation: --read, --write, --flush, --discard, --write-zeroes');
    const req: SetFilterRequest = { device: dev };
    if (o.range.length) req.ranges = o.range.map((r: string) => ({ ...parseRange(r), ops }));
    else req.wholeDeviceOps = ops as SetFilterRequest['wholeDeviceOps'];
    if (o.ttl !== undefined) {
      const ms = parseDuration(o.ttl, 'TTL');
      if (ms <= 0) throw new UsageError(`bad TTL "${o.ttl}": must be positive`);
      req.ttlMs = ms;
    }
    if (o.probability !== undefined) req.probability = parseProbability(o.probability);
    if (o.maxFailures !== undefined) req.maxFailures = parseCount(o.maxFailures, '--max-failures', 1);
    plan = { run: (c) => c.setFilter(req), render: ((f) => [`set ${describeFilter(f)}`]) as Plan['render'] };
  });

  let colors = pc.createColors(false);
  try {
    program.parse(argv, { from: 'user' });
  } catch (e) {
    // --help and --version end here with 0; help shown for a missing command is a usage error
    if (e instanceof CommanderError && e.exitCode === 0) return null;
    throw e;
  }
  if (!plan) throw new UsageError('no command: attach, detach, status, delete DEV or set DEV (see --help)');
  const opts = program.opts();
  colors = pc.createColors(io.stdoutTty && !opts.json);
  const hosts = parseHosts(opts.host, opts.hostsFile);
  opts.timeoutMs = parseDuration(opts.timeout, '--timeout');
  if (opts.timeoutMs <= 0) throw new UsageError('--timeout must be positive');
  opts.concurrency = parseCount(opts.concurrency, '--concurrency', 1);
  const tlsGiven = [opts.tlsCa, opts.tlsCert, opts.tlsKey].filter(Boolean).length;
  if (tlsGiven && tlsGiven < 3) throw new UsageError('TLS needs all of --tls-ca, --tls-cert and --tls-key');
  if (tlsGiven) opts.tls = { ca: opts.tlsCa, cert: opts.tlsCert, key: opts.tlsKey };
  return { hosts, opts, plan };
}

export async function runCli(argv: string[], io: Io): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs(argv, io);
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 1; // commander already printed it
    io.err(`iofilterctl: ${(e as Error).message}\n`);
    return 1;
  }
  if (!parsed) return 0;
  const { hosts, opts, plan } = parsed;
  const c = pc.createColors(io.stdoutTty && !opts.json);
  const bar =
    io.stderrTty && hosts.length > 5
      ? new cliProgress.SingleBar({ stream: process.stderr, format: '{bar} {value}/{total} hosts', hideCursor: true }, cliProgress.Presets.shades_classic)
      : null;
  bar?.start(hosts.length, 0);
  let results: HostResult<unknown>[];
  try {
    results = await runFleet(hosts, (client) => plan.run(client), {
      concurrency: opts.concurrency,
      timeoutMs: opts.timeoutMs,
      tls: opts.tls,
      onResult: (_r, done) => bar?.update(done),
    });
  } catch (e) {
    bar?.stop();
    io.err(`iofilterctl: ${(e as Error).message}\n`);
    return 1;
  }
  bar?.stop();
  for (const r of results) {
    if (opts.json) io.out(jsonLine(r) + '\n');
    else for (const l of hostLines(r, plan.render as (v: unknown) => string[], c)) io.out(l + '\n');
  }
  const slowest = Math.max(0, ...results.map((r) => r.ms));
  io.err(`${summary(results)} (${hosts.length} host${hosts.length === 1 ? '' : 's'}, slowest ${formatDuration(slowest)})\n`);
  let code = 0;
  if (results.some((r) => r.outcome === 'error')) code |= 2;
  if (results.some((r) => r.outcome === 'unreachable')) code |= 4;
  return code;
}

if (require.main === module) {
  runCli(process.argv.slice(2), {
    out: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
    stdoutTty: !!process.stdout.isTTY,
    stderrTty: !!process.stderr.isTTY,
  }).then((code) => {
    process.exitCode = code;
  });
}
