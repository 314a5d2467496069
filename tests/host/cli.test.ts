// iofilterctl as a subprocess against two real agents on loopback (observe mode,
// separate ports and pin dirs) and one address where nothing listens: per-host lines,
// --json line by line, the summary on stderr, and every exit-code bit.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { AGENT_MAIN, RunningAgent, startAgent } from '../helpers/agent';
import { createLoop, loopUnavailableReason, LoopDevice } from '../helpers/loop';
import { freePort } from '../helpers/vm';

const CLI = path.join(__dirname, '..', '..', 'dist', 'client', 'cli.js');
const skipReason = loopUnavailableReason() ?? (fs.existsSync(AGENT_MAIN) ? null : 'the project is not built (npm run build)');
if (skipReason) console.warn(`host CLI tests skipped: ${skipReason}`);
const d = skipReason ? describe.skip : describe;

async function ctl(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, [CLI, '--timeout', '5s', ...args]).then(
    (r) => ({ code: 0, ...r }),
    (e) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

d('iofilterctl against real agents', () => {
  const agents: RunningAgent[] = [];
  let dead: string;
  let disk: LoopDevice;
  let hosts: string[];

  beforeAll(async () => {
    disk = createLoop(32);
    for (let i = 0; i < 2; i++) agents.push(await startAgent({ pinDir: `/sys/fs/bpf/iofilter-cli-test-${process.pid}-${i}`, attach: 'observe' }));
    dead = `127.0.0.1:${await freePort()}`;
    hosts = [agents[0].address, dead, agents[1].address];
  });
  afterAll(async () => {
    for (const a of agents) {
      await ctl('--host', a.address, 'detach');
      await a.stop();
    }
    disk?.detach();
  });

  test('status: one block per host in the order given, the dead one unreachable; summary on stderr; exit 4', async () => {
    const r = await ctl('--host', hosts.join(','), 'status');
    expect(r.code).toBe(4);
    const order = r.stdout.split('\n').filter(Boolean).map((l) => l.slice(0, l.indexOf(': ')));
    expect([...new Set(order)]).toEqual(hosts);
    expect(r.stdout).toMatch(new RegExp(`^${dead}: unreachable: `, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^${agents[0].address}: .*attached observe`, 'm'));
    expect(r.stderr).toMatch(/^2 ok, 0 failed, 1 unreachable/m);
  });

  test('set on every agent: exit 0; status renders the filter table per host', async () => {
    const r = await ctl('--host', agents[0].address, '--host', agents[1].address, 'set', disk.path, '--write', '--range', '0-99', '--range', '1000-1999', '--ttl', '10m');
    expect(r.stderr).toMatch(/^2 ok, 0 failed, 0 unreachable/m);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(agents.map((a) => `${a.address}: set ${path.basename(disk.path)} (${disk.major}:${disk.minor}): 0-99 write; 1000-1999 write; ttl 10m0s`));
    const st = await ctl('--host', agents[0].address, 'status');
    expect(st.stdout).toMatch(/device .* ranges \(sectors\) .* ops .* matched .* would fail .* ttl left/);
    expect(st.stdout).toMatch(new RegExp(`${path.basename(disk.path)} \\(${disk.major}:${disk.minor}\\)\\s*│ 0-99\\s*│ write`));
  });

  test('--json: exactly one parseable JSON object per host on stdout, nothing else', async () => {
    const r = await ctl('--json', '--host', hosts.join(','), 'status');
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(3);
    const objs = lines.map((l) => JSON.parse(l));
    expect(objs.map((o) => o.host)).toEqual(hosts);
    expect(objs.map((o) => o.outcome)).toEqual(['ok', 'unreachable', 'ok']);
    expect(objs[0].result.filters[0].ranges[0]).toMatchObject({ start: '0', end: '99' });
    expect(r.stderr).toMatch(/2 ok, 0 failed, 1 unreachable/);
  });

  test('exit bits: 2 when a host answers with an error, 6 with an unreachable one too, 1 for usage', async () => {
    const two = await ctl('--host', agents[0].address, 'set', '7:999999', '--write');
    expect(two.code).toBe(2);
    expect(two.stdout).toMatch(new RegExp(`^${agents[0].address}: error NOT_FOUND: no block device 7:999999`, 'm'));
    expect(two.stderr).toMatch(/0 ok, 1 failed, 0 unreachable/);
    const six = await ctl('--host', `${agents[0].address},${dead}`, 'set', '7:999999', '--write');
    expect(six.code).toBe(6);
    const one = await ctl('--host', agents[0].address, 'set', disk.path);
    expect(one).toMatchObject({ code: 1, stdout: '' });
    const ok = await ctl('--host', agents[0].address, 'delete', disk.path);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/deleted filter on/);
  });

  test('a hosts file with comments', async () => {
    const f = `/tmp/iofilter-cli-hosts-${process.pid}`;
    fs.writeFileSync(f, `# two agents\n${agents[0].address}\n${agents[1].address}  # second\n`);
    const r = await ctl('--hosts-file', f, 'status');
    fs.rmSync(f);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^2 ok/m);
  });
});
