#!/usr/bin/env node
// iofilterctl: drive iofilter agents on many hosts at once. Data on stdout (one
// `host:` line or block per host, or one JSON object per host with --json), progress
// and the summary on stderr. Exit code, bitwise: 1 usage/local error, 2 some host
// answered with an error, 4 some host was unreachable or timed out.
import * as fs from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import cliProgress from 'cli-progress';
import pc from 'picocolors';
import type { AttachState__Output } from '../proto/gen/iofilter/v1/AttachState';
import type { SetFilterRequest } from '../proto/gen/iofilter/v1/SetFilterRequest';
import type { WatchRequest } from '../proto/gen/iofilter/v1/WatchRequest';
import { checkDevice, formatDuration, parseCount, parseDuration, parseEventRate, parseHosts, parseProbability, parseRange, setTarget } from './args';
import { version } from '../common/version';
import { UsageError } from './errors';
import { FAULT_HELP, faultFromWords, FaultWords } from './faults';
import { compactRanges, type IoFilterClient, type ViewName } from './client';
import { AttachModeName, MODE_NAMES, OP_NAMES, opToWire, opWord, wireModeWord } from '../proto/names';
import { DEFAULT_CONCURRENCY, HostResult, runFleet } from './fleet';
import { Colors, exitCode, hostLines, jsonLine, setLines, statusLines, summary } from './render';
import { addScopeOptions, deletedText, deleteRequest, scopeFields } from './scope';
import { RUN_HELP, runPlanCommand } from './run-view';
import { runWatch, watchRequest } from './watch';

/** Where the CLI writes; injectable so runCli() is testable in-process. */
export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
  stdoutTty: boolean;
  stderrTty: boolean;
  /** For `watch`: starts catching Ctrl-C, which aborts the returned signal. */
  trapInterrupt?: () => AbortSignal;
}

export interface Options {
  json: boolean;
  concurrency: number;
  timeoutMs: number;
  tls?: { ca: Buffer; cert: Buffer; key: Buffer };
}

/** One command: what to ask each host, and how to show one host's answer. */
export interface Plan<T = unknown> {
  command: string;
  run: (c: IoFilterClient) => Promise<T>;
  render: (v: T, c: Colors) => string[];
}

const plan = <T>(p: Plan<T>): Plan => p as unknown as Plan;

/** `run PLAN`: the experiment runner drives the fleet itself (client/run-view.ts). */
export interface RunArgs {
  file: string;
  dryRun: boolean;
}

const MAX_TIMEOUT_MS = 24 * 3_600_000;

const HELP_AFTER = `
Hosts: host (port 50051), host:port, [v6]:port or unix:/path; --host is repeatable and
takes comma lists; --hosts-file takes one per line with # comments ("-" for stdin).
DUR: 500ms, 30s, 5m, 1h30m, or a plain number of seconds.
Exit code, bitwise: 0 all ok, 1 usage or local error, 2 some host answered with an
error, 4 some host was unreachable or timed out (6: both); run adds 8 (aborted) and
16 (a filter may remain): see run --help.`;

function readTls(flag: string, file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new UsageError(`cannot read ${flag} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/**
 * Parses and validates argv (without the node and script names). Pure apart from
 * reading --hosts-file and the TLS files: no network. Throws UsageError or
 * CommanderError (already printed via io); null when --help/--version was served.
 */
export function parseArgs(argv: string[], io: Io): { hosts: string[]; opts: Options; plan?: Plan; experiment?: RunArgs; watch?: WatchRequest } | null {
  let chosen: Plan | undefined;
  let experiment: RunArgs | undefined;
  let watch: WatchRequest | undefined;
  const program = new Command('iofilterctl')
    .description('Block-device fault injection across a fleet of iofilter agents')
    .usage('[--host H]... [--hosts-file F] [options] COMMAND')
    .version(version, '-V, --version', "print iofilterctl's version")
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .showSuggestionAfterError(true)
    .addHelpText('after', HELP_AFTER)
    .option('--host <host>', 'agent host[:port] (default port 50051); repeatable, comma lists', (v: string, p: string[]) => [...p, v], [] as string[])
    .option('--hosts-file <file>', 'one host per line, # comments, - for stdin')
    .option('--concurrency <n>', 'hosts worked on at once', String(DEFAULT_CONCURRENCY))
    .option('--timeout <dur>', 'deadline per host (e.g. 5s, 500ms)', '10s')
    .option('--json', 'one JSON object per host per line on stdout, nothing else there')
    .option('--tls-ca <file>', "CA that signed the agents' certificates")
    .option('--tls-cert <file>', 'client certificate (its CN/SAN is your identity)')
    .option('--tls-key <file>', 'client private key');

  program
    .command('attach')
    .description('load and attach the program (idempotent: an attached agent keeps its mode)')
    .addOption(new Option('--mode <mode>', 'attach mode').choices([...MODE_NAMES]).default('auto'))
    .action((o: { mode: AttachModeName }) => {
      chosen = plan<AttachState__Output>({
        command: 'attach',
        run: (c) => c.attach(o.mode),
        render: (s) => [`attached ${wireModeWord(s.mode)} (${s.hook})${s.adopted ? ', adopted existing pins' : ''}`],
      });
    });
  program
    .command('detach')
    .description('detach the program: every filter is gone, pins removed')
    .action(() => {
      chosen = plan({
        command: 'detach',
        run: (c) => c.detach(),
        render: (r) => [r.wasAttached ? `detached; ${r.filtersRemoved} filter(s) removed` : 'was not attached'],
      });
    });
  program
    .command('status')
    .description('kernel capabilities, attach state, every filter with its counters')
    .addOption(new Option('--view <view>', 'full: every range with its counters; basic: each filter without its ranges (smaller answers from many hosts)').choices(['basic', 'full']).default('full'))
    .action((o: { view: ViewName }) => {
      chosen = plan({ command: 'status', run: (c) => c.status(o.view), render: statusLines });
    });
  addScopeOptions(
    program
      .command('delete')
      .argument('[dev]', 'MAJ:MIN or /dev path (resolved on each host)')
      .description("remove DEV's filter (the unscoped one, or the scope given), every filter of DEV (--all-scopes), or one filter by id")
      .option('--all-scopes', 'every filter of DEV, whatever its cgroup scope')
      .option('--id <n>', 'the filter with this id (see status), whatever its device'),
  ).action((dev: string | undefined, o) => {
    const { req, what } = deleteRequest(dev, o);
    chosen = plan({ command: 'delete', run: (c) => c.deleteFilter(req), render: (r) => [deletedText(r, what)] });
  });
  const set = program
    .command('set')
    .argument('[dev]', 'MAJ:MIN or /dev path (resolved on each host)')
    .description("fail the selected operations on DEV (whole device, or each --range) or on a file's blocks (--file); replaces the device's filter of the same cgroup scope")
    .option('--file <path>', "instead of DEV: the blocks of this file on each agent's host (its extents at the time of the call), on the device holding it")
    .option('--range <start-end>', "512-byte sectors, inclusive, in DEV's own coordinates; repeatable", (v: string, p: string[]) => [...p, v], [] as string[])
    .option('--ttl <dur>', "the kernel stops failing I/O after this (default: the agent's default TTL)")
    .option('--probability <p>', 'fail about this share of matching I/O, in (0, 1]')
    .option('--max-failures <k>', 'fail only the first K matching I/Os')
    .option('--events <n>', 'kernel events for `watch`: at most N per second (default 1000; 0: none)')
    .option('--events-spared', 'also emit events for matching I/O spared by --probability or --max-failures')
    .addOption(new Option('--backend <backend>', 'what serves the filter: auto (bpf for EIO when an enforcing mode is attached, else the first backend that can do it exactly), bpf, dm, blkinject, throttle').choices(['auto', 'bpf', 'dm', 'blkinject', 'throttle']).default('auto'))
    .option('--error <status>', FAULT_HELP.error)
    .option('--delay <delay>', FAULT_HELP.delay)
    .option('--throttle <limits>', FAULT_HELP.throttle)
    .option('--drop-writes', FAULT_HELP.dropWrites)
    .option('--corrupt <how>', FAULT_HELP.corrupt);
  for (const op of OP_NAMES) set.option(`--${opWord(op)}`, `fail ${opWord(op).replace('-', ' ')} I/O`);
  addScopeOptions(set);
  type SetOpts = FaultWords & { backend: string; file?: string; range: string[]; ttl?: string; probability?: string; maxFailures?: string; events?: string; eventsSpared?: boolean; cgroup?: string; cgroupId?: string; pid?: string } & Record<string, unknown>;
  set.action((dev: string | undefined, o: SetOpts) => {
    const target = setTarget(dev, o.file, o.range.length > 0);
    // commander camel-cases flags: --write-zeroes -> writeZeroes
    const ops = OP_NAMES.filter((op) => o[opWord(op).replace(/-(\w)/g, (_m, ch: string) => ch.toUpperCase())]).map(opToWire);
    const fault = faultFromWords(o);
    // delay, throttle, drop-writes and corrupt act on their own ops; error needs them chosen
    if (!ops.length && (!fault || fault.error)) throw new UsageError('set: select at least one operation: --read, --write, --flush, --discard, --write-zeroes');
    const req: SetFilterRequest = { ...target, ...scopeFields(o), ...(fault && { fault }) };
    if (o.range.length) req.ranges = o.range.map((r) => ({ ...parseRange(r), ops }));
    else req.wholeDeviceOps = ops;
    if (o.ttl !== undefined) {
      const ms = parseDuration(o.ttl, 'TTL');
      if (ms <= 0) throw new UsageError(`bad TTL "${o.ttl}": must be positive`);
      req.ttlMs = ms;
    }
    if (o.probability !== undefined) req.probability = parseProbability(o.probability);
    if (o.maxFailures !== undefined) req.maxFailures = parseCount(o.maxFailures, '--max-failures', 1);
    if (o.events !== undefined) req.eventsPerSecond = parseEventRate(o.events, '--events');
    if (o.eventsSpared) req.eventsSpared = true;
    if (o.backend !== 'auto') req.backend = `BACKEND_${o.backend.toUpperCase()}` as SetFilterRequest['backend'];
    // the answer shows the filter as stored, every range included (FULL); many ranges go packed
    const wire = compactRanges(req);
    chosen = plan({ command: 'set', run: (c) => c.setFilterResponse(wire, 'full'), render: setLines });
  });

  program
    .command('wrap')
    .argument('<dev>', 'an unmounted, unused device (MAJ:MIN or /dev path, on each host)')
    .requiredOption('--name <name>', 'the wrapped device becomes /dev/mapper/iofilter-NAME')
    .description('make DEV faultable on any kernel: /dev/mapper/iofilter-NAME, a dm-linear pass-through over all of DEV (make the filesystem on it)')
    .action((dev: string, o: { name: string }) => {
      checkDevice(dev);
      chosen = plan({ command: 'wrap', run: (c) => c.wrap(dev, o.name), render: (r) => [`wrapped ${r.wrapped?.below} as ${r.wrapped?.path}${r.wrapped?.device ? ` (${r.wrapped.device.major}:${r.wrapped.device.minor})` : ''}`] });
    });
  program
    .command('unwrap')
    .argument('<name>', 'the NAME given to wrap')
    .description('remove /dev/mapper/iofilter-NAME (refused while it is open or has a filter)')
    .action((name: string) => {
      chosen = plan({ command: 'unwrap', run: (c) => c.unwrap(name), render: (r) => [r.existed ? `unwrapped iofilter-${name}` : `no wrapped device ${name}`] });
    });
  program
    .command('halt')
    .description('delete every filter on each host, one call per host (the program stays attached); idempotent')
    .action(() => {
      chosen = plan({ command: 'halt', run: (c) => c.clearFilters(), render: (r) => [`halted: ${r.removed} filter(s) removed`] });
    });
  program
    .command('run')
    .argument('<plan>', 'experiment plan, YAML or JSON (see README: Experiments)')
    .description("run an experiment plan: steps set in order, held while the plan's check passes; any failure or Ctrl-C aborts and deletes the plan's filters")
    .option('--dry-run', 'check the plan and print what each step would do on which hosts; call nothing')
    .addHelpText('after', RUN_HELP)
    .action((file: string, o: { dryRun?: boolean }) => {
      experiment = { file, dryRun: !!o.dryRun };
    });
  program
    .command('watch')
    .description('live stream of the I/O the filters match, merged across hosts, until Ctrl-C')
    .option('--device <dev>', 'only I/O to DEV (MAJ:MIN or /dev path; a disk includes its partitions)')
    .option('--outcome <outcome>', 'only failed | would-fail | spared; repeatable', (v: string, p: string[]) => [...p, v], [] as string[])
    .option('--filter <id>', 'only events of this filter id')
    .action((o: { device?: string; outcome: string[]; filter?: string }) => {
      watch = watchRequest(o);
    });

  try {
    program.parse(argv, { from: 'user' });
  } catch (e) {
    // --help and --version end here with 0; help shown for a missing command is a usage error
    if (e instanceof CommanderError && e.exitCode === 0) return null;
    throw e;
  }
  if (!chosen && !experiment && !watch) throw new UsageError('no command: attach, detach, status, delete DEV, set DEV, wrap DEV, unwrap NAME, halt, run PLAN or watch (see --help)');
  const g = program.opts();
  // a plan may name its own hosts
  const hosts = experiment && !g.host.length && !g.hostsFile ? [] : parseHosts(g.host, g.hostsFile);
  const timeoutMs = parseDuration(g.timeout, '--timeout');
  if (timeoutMs <= 0 || timeoutMs > MAX_TIMEOUT_MS) throw new UsageError(`bad --timeout "${g.timeout}": must be more than 0 and at most 24h`);
  const concurrency = Number(parseCount(g.concurrency, '--concurrency', 1));
  const opts: Options = { json: !!g.json, concurrency, timeoutMs };
  const tlsGiven = [g.tlsCa, g.tlsCert, g.tlsKey].filter(Boolean).length;
  if (tlsGiven && tlsGiven < 3) throw new UsageError('TLS needs all of --tls-ca, --tls-cert and --tls-key');
  // read now so a missing file is a usage error, before any host is contacted
  if (tlsGiven) opts.tls = { ca: readTls('--tls-ca', g.tlsCa), cert: readTls('--tls-cert', g.tlsCert), key: readTls('--tls-key', g.tlsKey) };
  return { hosts, opts, plan: chosen, experiment, watch };
}

/** The whole CLI minus process wiring; resolves the exit code. */
export async function runCli(argv: string[], io: Io): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs(argv, io);
  } catch (e) {
    if (e instanceof CommanderError) return 1; // commander already printed it
    io.err(`iofilterctl: ${(e as Error).message}\n`);
    return 1;
  }
  if (!parsed) return 0;
  if (parsed.experiment) return runPlanCommand(parsed.experiment, parsed.hosts, parsed.opts, io);
  if (parsed.watch) return runWatch(parsed.hosts, parsed.opts, parsed.watch, io);
  const { hosts, opts } = parsed;
  const p = parsed.plan!;
  const c = pc.createColors(io.stdoutTty && !opts.json);
  const bar =
    io.stderrTty && hosts.length > 5
      ? new cliProgress.SingleBar(
          { stream: process.stderr, format: '{bar} {value}/{total} hosts', hideCursor: true, clearOnComplete: true },
          cliProgress.Presets.shades_classic,
        )
      : null;
  bar?.start(hosts.length, 0);
  // each host's lines go out as soon as every host before it has answered (the order
  // hosts were given), and its answer is dropped: 10,000 answers are never all held.
  // Under a progress bar on the same terminal, the lines wait for the bar to end.
  const held: string[] | null = bar && io.stdoutTty ? [] : null;
  const out = (s: string) => (held ? held.push(s) : io.out(s));
  const print = (r: HostResult<unknown>) => {
    if (opts.json) out(jsonLine(r) + '\n');
    else for (const l of hostLines(r, p.render, c)) out(l + '\n');
  };
  const waiting = new Map<number, HostResult<unknown>>();
  let printed = 0;
  let results: HostResult<unknown>[];
  try {
    results = await runFleet(hosts, (client) => p.run(client), {
      concurrency: opts.concurrency,
      timeoutMs: opts.timeoutMs,
      tls: opts.tls,
      keepValues: false,
      onResult: (i, r) => {
        waiting.set(i, r);
        for (let x; (x = waiting.get(printed)); printed++) {
          waiting.delete(printed);
          print(x);
        }
      },
      onProgress: (done) => bar?.update(done),
    });
  } catch (e) {
    io.err(`iofilterctl: ${(e as Error).message}\n`);
    return 1;
  } finally {
    bar?.stop();
  }
  held?.forEach((s) => io.out(s));
  const slowest = Math.max(0, ...results.map((r) => r.ms));
  io.err(`${summary(results)} (${hosts.length} host${hosts.length === 1 ? '' : 's'}, slowest ${formatDuration(slowest)})\n`);
  return exitCode(results);
}

if (require.main === module) {
  // ends `watch`: Ctrl-C, or the reader of stdout going away
  const interrupt = new AbortController();
  // `iofilterctl ... | head`: a closed pipe ends the output, not the process with a stack trace
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    interrupt.abort();
  });
  runCli(process.argv.slice(2), {
    out: (s) => void process.stdout.write(s),
    err: (s) => void process.stderr.write(s),
    stdoutTty: !!process.stdout.isTTY,
    stderrTty: !!process.stderr.isTTY,
    trapInterrupt: () => {
      // the first Ctrl-C ends the streams cleanly; a second one does not wait
      process.once('SIGINT', () => {
        interrupt.abort();
        process.once('SIGINT', () => process.exit(130));
      });
      return interrupt.signal;
    },
  }).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(`iofilterctl: ${(e as Error).stack ?? e}\n`);
      process.exitCode = 1;
    },
  );
}
