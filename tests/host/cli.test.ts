// iofilterctl as a subprocess (dist/client/cli.js) against two real agents on loopback
// (observe mode, separate ports and pin dirs) and one address where nothing listens:
// per-host lines, --json line by line, the summary on stderr, and every exit-code bit.
// Needs root (BPF, loop devices) and `npm run build`.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { parseDuration } from '../../client/args';
import { RunningAgent, startAgent } from '../helpers/agent';
import { createLoop, LoopDevice } from '../helpers/loop';
import { BUILT, describeIf, hostUnavailableReason } from '../helpers/tier';
import { freePort, ROOT } from '../helpers/common';

const CLI = path.join(ROOT, 'dist', 'client', 'cli.js');
const d = describeIf(hostUnavailableReason(BUILT.agent, BUILT.cli));

async function ctl(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, [CLI, '--timeout', '5s', ...args]).then(
    (r) => ({ code: 0, ...r }),
    (e) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

d('cli: iofilterctl subprocess against real agents', () => {
  const agents: RunningAgent[] = [];
  const pinDirs = [0, 1].map((i) => `/sys/fs/bpf/iofilter-cli-test-${process.pid}-${i}`);
  let dead: string;
  let disk: LoopDevice;
  let diskName: string;
  let hosts: string[];

  beforeAll(async () => {
    disk = createLoop(32);
    diskName = `${path.basename(disk.path)} (${disk.major}:${disk.minor})`;
    for (const pinDir of pinDirs) agents.push(await startAgent({ pinDir, attach: 'observe' }));
    dead = `127.0.0.1:${await freePort()}`; // bound, then closed: nothing listens
    hosts = [agents[0].address, dead, agents[1].address];
  });
  afterAll(async () => {
    for (const a of agents) {
      await ctl('--host', a.address, 'detach');
      await a.stop();
    }
    for (const p of pinDirs) fs.rmSync(p, { recursive: true, force: true });
    disk?.detach();
  });

  test('status: lines per host in the order given, the dead one unreachable; summary on stderr; exit 4', async () => {
    const r = await ctl('--host', hosts.join(','), 'status');
    expect(r.code).toBe(4);
    const order = r.stdout.split('\n').filter(Boolean).map((l) => l.slice(0, l.indexOf(': ')));
    expect([...new Set(order)]).toEqual(hosts);
    expect(r.stdout).toMatch(new RegExp(`^${esc(dead)}: unreachable: `, 'm'));
    for (const a of agents) {
      expect(r.stdout).toMatch(new RegExp(`^${esc(a.address)}: \\S+ kernel \\S+; attached observe \\(`, 'm'));
      // the attach details as the real agent reports them: its self-test, each program's recursion misses
      expect(r.stdout).toMatch(new RegExp(`^${esc(a.address)}:   self-test: passed at \\d{4}-\\d\\d-\\d\\dT\\S+Z: \\S`, 'm'));
      expect(r.stdout).toMatch(new RegExp(`^${esc(a.address)}:   program \\d+ iofilter_\\w+: (\\d+ recursion misses|recursion misses n/a \\(kernel < 5\\.12\\))`, 'm'));
      expect(r.stdout).not.toContain('pinned: false'); // observe links are pinned
    }
    expect(r.stderr).toMatch(/^2 ok, 0 failed, 1 unreachable \(3 hosts, slowest /m);
  });

  test('attach --mode observe is idempotent on attached agents: exit 0', async () => {
    const r = await ctl('--host', agents.map((a) => a.address).join(','), 'attach', '--mode', 'observe');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(agents.map((a) => expect.stringMatching(new RegExp(`^${esc(a.address)}: attached observe \\(`))));
  });

  test('set on every agent: exit 0, one line per host; status renders the filter table', async () => {
    const r = await ctl('--host', agents[0].address, '--host', agents[1].address, 'set', disk.path, '--write', '--range', '0-99', '--range', '1000-1999', '--ttl', '10m');
    expect(r.stderr).toMatch(/^2 ok, 0 failed, 0 unreachable/m);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(agents.map((a) => expect.stringMatching(new RegExp(`^${esc(a.address)}: set ${esc(diskName)}: 0-99 write; 1000-1999 write; ttl 10m0s; filter \\d+$`))));
    const st = await ctl('--host', agents[0].address, 'status');
    expect(st.code).toBe(0);
    expect(st.stdout).toMatch(/id .* device .* cgroup .* ranges \(sectors\) .* ops .* matched .* would fail .* ttl left/);
    // ttl left: whatever the machine's speed, a duration in (0, 10m]
    const left = new RegExp(`│ \\d+\\s*│ ${esc(diskName)}\\s*│ any\\s*│ 0-99\\s*│ write\\s*│ error EIO\\s*│ \\d+\\s*│ \\d+\\s*│ (\\S+)\\s*│`).exec(st.stdout);
    expect(left).not.toBeNull();
    const ms = parseDuration(left![1]);
    expect(ms).toBeGreaterThan(0);
    expect(ms).toBeLessThanOrEqual(600_000);
    expect(st.stdout).toMatch(/│\s+│\s+│\s+│ 1000-1999\s+│ write\s+│/);
    expect(st.stdout.split('\n').filter(Boolean).every((l) => l.startsWith(`${agents[0].address}: `))).toBe(true);
  });

  test('--json: exactly one parseable JSON object per host per line, nothing else on stdout', async () => {
    const r = await ctl('--json', '--host', hosts.join(','), 'status');
    expect(r.code).toBe(4);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    const objs = lines.map((l) => JSON.parse(l));
    expect(objs.map((o) => o.host)).toEqual(hosts);
    expect(objs.map((o) => o.ok)).toEqual([true, false, true]);
    expect(objs[1].error).toMatchObject({ code: 'UNAVAILABLE', kind: 'unreachable' });
    expect(objs[0].value.filters[0].ranges[0]).toMatchObject({ start: '0', end: '99', ops: ['OP_WRITE'] });
    expect(objs[0].value.filters[0].device).toMatchObject({ major: disk.major, minor: disk.minor });
    expect(r.stderr).toMatch(/^2 ok, 0 failed, 1 unreachable/m);
  });

  test('exit bits: 2 when a host answers with an error (NOT_FOUND), 6 with an unreachable one too, 1 for usage', async () => {
    const missing = '7:1048575'; // a loop minor that does not exist
    const two = await ctl('--host', agents[0].address, 'set', missing, '--write');
    expect(two.code).toBe(2);
    expect(two.stdout).toMatch(new RegExp(`^${esc(agents[0].address)}: error NOT_FOUND: .*${missing}`, 'm'));
    expect(two.stderr).toMatch(/^0 ok, 1 failed, 0 unreachable/m);
    const twoJson = await ctl('--json', '--host', `${agents[0].address},${agents[1].address}`, 'set', missing, '--write');
    expect(twoJson.code).toBe(2);
    expect(twoJson.stdout.trimEnd().split('\n').map((l) => JSON.parse(l).error.code)).toEqual(['NOT_FOUND', 'NOT_FOUND']);
    const six = await ctl('--host', `${agents[0].address},${dead}`, 'set', missing, '--write');
    expect(six.code).toBe(6);
    expect(six.stderr).toMatch(/^0 ok, 1 failed, 1 unreachable/m);
    const one = await ctl('--host', agents[0].address, 'set', disk.path); // no op selected
    expect(one).toMatchObject({ code: 1, stdout: '' });
    expect(one.stderr).toMatch(/select at least one operation/);
  });

  test('delete, then status shows no filters: exit 0', async () => {
    const del = await ctl('--host', agents.map((a) => a.address).join(','), 'delete', disk.path);
    expect(del.code).toBe(0);
    expect(del.stdout.trim().split('\n')).toEqual(agents.map((a) => `${a.address}: deleted filter on ${disk.path}`));
    const again = await ctl('--host', agents[0].address, 'delete', `${disk.major}:${disk.minor}`);
    expect(again.stdout).toMatch(/no filter on/);
    const st = await ctl('--host', agents[0].address, 'status');
    expect(st.stdout).toMatch(/: {3}no filters$/m);
  });

  test('a hosts file with comments and blank lines', async () => {
    const f = `/tmp/iofilter-cli-hosts-${process.pid}`;
    fs.writeFileSync(f, `# two agents\n${agents[0].address}\n\n${agents[1].address}  # second\n`);
    try {
      const r = await ctl('--hosts-file', f, 'status');
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/^2 ok, 0 failed, 0 unreachable \(2 hosts/m);
    } finally {
      fs.rmSync(f);
    }
  });
});
