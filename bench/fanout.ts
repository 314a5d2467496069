// Fan-out (issues 14 and 25): `iofilterctl set` and `iofilterctl status` across 10, 100,
// 1,000 and 10,000 agent endpoints on loopback (the real agent code over an in-memory
// kernel, hosted by endpoints.ts, real gRPC), plaintext and with mTLS: wall time, the
// client's peak RSS (/usr/bin/time %M) and its peak count of open file descriptors
// (sampled every 50 ms), cases interleaved by round. A sweep of --concurrency on 10,000
// endpoints is what the CLI's default is chosen from. The endpoints and the client share
// the machine's cores: the figures include the agents' side of every call.
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';

export type FanoutCommand = 'set' | 'status';

export interface FanoutCase {
  command: FanoutCommand;
  endpoints: number;
  /** null: the CLI's default (not passed). */
  concurrency: number | null;
  tls: boolean;
  /** Another build's cli.js (a "before" in the same run); unset: this build's. */
  cli?: string;
}

export interface FanoutResult extends FanoutCase {
  wallMs: number[];
  rssMiB: number[];
  ok: number[];
  peakFds: number[];
  exit: number[];
  /** CPU seconds (user + system) of the client, and of the agents' processes, during the run. */
  clientCpuS: number[];
  agentsCpuS: number[];
  /** The client's RLIMIT_NOFILE, soft/hard (the bench does not change it). */
  nofile: string;
}

export interface FanoutOptions {
  sizes: number[];
  /** --concurrency values tried on the largest size, with the commands in sweepCommands. */
  sweep: number[];
  sweepCommands?: FanoutCommand[];
  /** Sizes also run with mTLS. */
  tlsSizes: number[];
  /** An earlier build's dist/client/cli.js: set and status on the largest size with it too, in the same rounds. */
  beforeCli?: string;
  rounds: number;
  log: (s: string) => void;
}

const ROOT = path.join(__dirname, '..', '..');
const CLI = path.join(ROOT, 'dist', 'client', 'cli.js');
const PER_PROCESS = 2500;
const PORTS_PER_AGENT = 10;

interface Certs {
  server: { cert: string; key: string; clientCa: string };
  client: { ca: string; cert: string; key: string };
}

/** A CA, a server certificate for 127.0.0.1 and an operator client certificate (CN bench). */
function makeCerts(dir: string): Certs {
  const f = (n: string) => path.join(dir, n);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  ssl('req', '-x509', ...ec, '-days', '2', '-subj', '/CN=bench-ca', '-keyout', f('ca.key'), '-out', f('ca.crt'));
  for (const [cn, ext] of [['agent', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'], ['bench', 'extendedKeyUsage=clientAuth\n']]) {
    fs.writeFileSync(f(`${cn}.ext`), ext);
    ssl('req', ...ec, '-subj', `/CN=${cn}`, '-keyout', f(`${cn}.key`), '-out', f(`${cn}.csr`));
    ssl('x509', '-req', '-in', f(`${cn}.csr`), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', f(`${cn}.ext`), '-out', f(`${cn}.crt`));
  }
  return { server: { cert: f('agent.crt'), key: f('agent.key'), clientCa: f('ca.crt') }, client: { ca: f('ca.crt'), cert: f('bench.crt'), key: f('bench.key') } };
}

/** `n` endpoints in processes of PER_PROCESS, started at once; resolves their addresses. */
async function startEndpoints(n: number, certs: Certs | null, procs: ChildProcess[]): Promise<string[]> {
  const parts: Promise<string[]>[] = [];
  for (let left = n; left > 0; left -= PER_PROCESS) {
    const o = { n: Math.min(PER_PROCESS, left), portsPerAgent: PORTS_PER_AGENT, ...(certs && { tls: certs.server, roles: { bench: 'operator' } }) };
    const p = spawn(process.execPath, [path.join(__dirname, 'endpoints.js'), JSON.stringify(o)], { stdio: ['ignore', 'pipe', 'inherit'] });
    procs.push(p);
    parts.push(
      new Promise((resolve, reject) => {
        let buf = '';
        p.stdout!.on('data', (d) => {
          buf += d;
          if (buf.endsWith('ready\n')) resolve(buf.split('\n').filter((l) => l && l !== 'ready'));
        });
        p.once('exit', (c) => reject(new Error(`endpoint process exited ${c}`)));
      }),
    );
  }
  return (await Promise.all(parts)).flat();
}

/** Open descriptors of `pid` (0 once it is gone). */
function fdCount(pid: number): number {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

/** "soft/hard" RLIMIT_NOFILE of `pid`, as /proc says. */
function openFilesLimit(pid: number): string {
  try {
    const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(fs.readFileSync(`/proc/${pid}/limits`, 'utf8'));
    return m ? `${m[1]}/${m[2]}` : '';
  } catch {
    return '';
  }
}

/** The node process under /usr/bin/time (its only child). */
function childOf(pid: number): number | null {
  try {
    const c = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/)[0];
    return c ? Number(c) : null;
  } catch {
    return null;
  }
}

/** One CLI run; counts the hosts answered ok as the JSON lines stream out (nothing kept). */
/** CPU seconds (user + system) the processes have used so far. */
function cpuOf(procs: ChildProcess[]): number {
  let ticks = 0;
  for (const p of procs) {
    try {
      const f = fs.readFileSync(`/proc/${p.pid}/stat`, 'utf8').split(') ')[1].split(' ');
      ticks += Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
    } catch {
      // exited
    }
  }
  return ticks / 100; // USER_HZ
}

async function runOnce(c: FanoutCase, addrs: string[], certs: Certs | null, agents: ChildProcess[]) {
  const hostsFile = path.join(os.tmpdir(), `iofilter-fanout-${process.pid}-${c.endpoints}`);
  fs.writeFileSync(hostsFile, addrs.slice(0, c.endpoints).join('\n') + '\n');
  const tls = certs ? ['--tls-ca', certs.client.ca, '--tls-cert', certs.client.cert, '--tls-key', certs.client.key] : [];
  const conc = c.concurrency === null ? [] : ['--concurrency', String(c.concurrency)];
  const cmd = c.command === 'set' ? ['set', '7:0', '--write', '--ttl', '1m'] : ['status'];
  const args = ['-f', 'peak-rss-kib %M cpu %U %S', process.execPath, c.cli ?? CLI, '--hosts-file', hostsFile, '--timeout', '30s', ...conc, '--json', ...tls, ...cmd];
  const agentsCpu0 = cpuOf(agents);
  const t = process.hrtime.bigint();
  const p = spawn('/usr/bin/time', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let ok = 0;
  let err = '';
  let peakFds = 0;
  let node: number | null = null;
  let nofile = '';
  const sampler = setInterval(() => {
    node ??= childOf(p.pid!);
    if (node) peakFds = Math.max(peakFds, fdCount(node));
    if (node && !nofile) nofile = openFilesLimit(node);
  }, 50);
  readline.createInterface({ input: p.stdout! }).on('line', (l) => {
    if (l.startsWith('{"host"') && l.includes('"ok":true')) ok++;
  });
  p.stderr!.on('data', (d) => (err += d));
  const exit = await new Promise<number>((resolve) => p.once('close', (code) => resolve(code ?? -1)));
  clearInterval(sampler);
  const wallMs = Number(process.hrtime.bigint() - t) / 1e6;
  const agentsCpuS = cpuOf(agents) - agentsCpu0;
  fs.rmSync(hostsFile, { force: true });
  const m = /peak-rss-kib (\d+) cpu ([\d.]+) ([\d.]+)/.exec(err);
  if (!m) throw new Error(`no peak RSS from /usr/bin/time: ${err.slice(-500)}`);
  return { wallMs, rssMiB: Number(m[1]) / 1024, clientCpuS: Number(m[2]) + Number(m[3]), agentsCpuS, ok, peakFds, exit, nofile };
}

export const caseName = (c: FanoutCase) => `${c.command} ${c.endpoints}${c.tls ? ' mTLS' : ''}${c.concurrency === null ? '' : ` --concurrency ${c.concurrency}`}${c.cli ? ' (before)' : ''}`;

export async function runFanout(o: FanoutOptions): Promise<FanoutResult[]> {
  const procs: ChildProcess[] = [];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iofilter-fanout-certs-'));
  const cases: FanoutCase[] = [];
  const commands: FanoutCommand[] = ['set', 'status'];
  for (const endpoints of o.sizes) for (const command of commands) cases.push({ command, endpoints, concurrency: null, tls: false });
  const top = Math.max(...o.sizes);
  for (const concurrency of o.sweep) for (const command of o.sweepCommands ?? commands) cases.push({ command, endpoints: top, concurrency, tls: false });
  for (const endpoints of o.tlsSizes) for (const command of commands) cases.push({ command, endpoints, concurrency: null, tls: true });
  if (o.beforeCli) for (const command of commands) cases.push({ command, endpoints: top, concurrency: null, tls: false, cli: o.beforeCli });
  const results: FanoutResult[] = cases.map((c) => ({ ...c, wallMs: [], rssMiB: [], ok: [], peakFds: [], exit: [], clientCpuS: [], agentsCpuS: [], nofile: '' }));
  try {
    const certs = o.tlsSizes.length ? makeCerts(dir) : null;
    const t0 = Date.now();
    const plainProcs: ChildProcess[] = [];
    const secureProcs: ChildProcess[] = [];
    const plain = await startEndpoints(top, null, plainProcs);
    const secure = certs ? await startEndpoints(Math.max(...o.tlsSizes), certs, secureProcs) : [];
    procs.push(...plainProcs, ...secureProcs);
    o.log(`${plain.length} plaintext and ${secure.length} mTLS endpoints up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    for (let round = 0; round < o.rounds; round++) {
      for (let k = 0; k < results.length; k++) {
        const r = results[(round + k) % results.length];
        const x = await runOnce(r, r.tls ? secure : plain, r.tls ? certs : null, r.tls ? secureProcs : plainProcs);
        r.wallMs.push(x.wallMs);
        r.rssMiB.push(x.rssMiB);
        r.ok.push(x.ok);
        r.peakFds.push(x.peakFds);
        r.exit.push(x.exit);
        r.clientCpuS.push(x.clientCpuS);
        r.agentsCpuS.push(x.agentsCpuS);
        r.nofile ||= x.nofile;
        o.log(`round ${round + 1}/${o.rounds} ${caseName(r)}: ${x.wallMs.toFixed(0)} ms, ${x.rssMiB.toFixed(0)} MiB peak RSS, client CPU ${x.clientCpuS.toFixed(2)} s, agents CPU ${x.agentsCpuS.toFixed(2)} s, ${x.peakFds} fds at most, ${x.ok} ok, exit ${x.exit}`);
      }
    }
  } finally {
    procs.forEach((p) => p.kill());
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return results;
}

if (require.main === module) {
  // alone: node dist/bench/fanout.js '{"sizes":[10,100,1000,10000],"sweep":[64,256,1024],"tlsSizes":[1000],"rounds":2}' out.json
  const [json, out] = process.argv.slice(2);
  const started = os.loadavg();
  runFanout({ ...JSON.parse(json), log: (s: string) => process.stderr.write(`  ${s}\n`) })
    .then((r) => fs.writeFileSync(out, JSON.stringify({ loadStart: started, loadEnd: os.loadavg(), results: r }, null, 1)))
    .catch((e) => {
      process.stderr.write(`fanout bench failed: ${e.stack ?? e}\n`);
      process.exit(1);
    });
}
