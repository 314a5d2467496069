// `iofilterctl run` and `halt` in-process against fake agents (no root): what is sent
// to whom and what is not - nothing at all on --dry-run, one ClearFilters per host on
// halt, cleanup only where a filter may have landed - and the exit bits 8 (aborted)
// and 16 (a filter may remain).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { IoFilterClient } from '../../client';
import { Io, runCli } from '../../client/cli';
import { FakeAgent, startFakeAgent, stopFakeAgents } from '../helpers/fake-agent';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-run-'));
const agents: FakeAgent[] = [];
afterAll(() => {
  stopFakeAgents(agents);
  fs.rmSync(tmp, { recursive: true, force: true });
});

function capture(stderrTty = false): Io & { stdout: string; stderr: string } {
  const io = { stdout: '', stderr: '', stdoutTty: false, stderrTty, out: (s: string) => void (io.stdout += s), err: (s: string) => void (io.stderr += s) };
  return io;
}
async function fakes(n: number, o: Parameters<typeof startFakeAgent>[0] = { delayMs: 1 }): Promise<FakeAgent[]> {
  const out = [];
  for (let i = 0; i < n; i++) out.push(await startFakeAgent(o));
  agents.push(...out);
  return out;
}
let planNo = 0;
function planFile(text: string): string {
  const f = path.join(tmp, `plan-${++planNo}.yaml`);
  fs.writeFileSync(f, text);
  return f;
}
const calls = (a: FakeAgent) => Object.fromEntries(a.calls);
const events = (io: { stdout: string }) => io.stdout.trim().split('\n').map((l) => JSON.parse(l));
const twoSteps = (hosts: string[], check = '') => `hosts: [${hosts.join(', ')}]
${check}steps:
  - name: canary
    hosts: 2
    set: { device: /dev/loop0, ops: [write], ranges: ["0-99"] }
    hold: 0s
  - name: everyone
    hosts: all
    set: { device: /dev/loop0, ops: [read, write] }
    hold: 0s
`;

test('--dry-run: prints each step with its hosts and requests, runs no check and calls no agent', async () => {
  const fleet = await fakes(3);
  const marker = path.join(tmp, 'checked');
  const f = planFile(twoSteps(fleet.map((a) => a.address), `check: { command: "touch ${marker}", every: 1s }\n`));
  const io = capture();
  expect(await runCli(['run', f, '--dry-run'], io)).toBe(0);
  expect(io.stdout).toContain(`step 1/2 canary: 2 hosts (${fleet[0].address}, ${fleet[1].address}); hold 0ms`);
  expect(io.stdout).toContain(`step 2/2 everyone: 3 hosts (${fleet.map((a) => a.address).join(', ')}); hold 0ms`);
  expect(io.stdout).toMatch(/^ {2}set \/dev\/loop0: 0-99 write; ttl \d+s$/m);
  expect(io.stderr).toBe('dry run: nothing was sent, no check was run\n');
  const json = capture();
  expect(await runCli(['--json', 'run', f, '--dry-run'], json)).toBe(0);
  expect(events(json)).toEqual([expect.objectContaining({ event: 'plan', dryRun: true, hosts: fleet.map((a) => a.address) })]);
  // a barrier, not a sleep: a Status of our own to each agent, answered; any call the CLI
  // had started before it returned was sent before ours and would be counted first
  for (const a of fleet) {
    const c = new IoFilterClient(a.address);
    await c.status();
    c.close();
  }
  expect(fleet.map(calls)).toEqual([{ Status: 1 }, { Status: 1 }, { Status: 1 }]);
  expect(fs.existsSync(marker)).toBe(false);
});

test('halt: exactly one ClearFilters per host and no other call; per-host lines', async () => {
  const fleet = await fakes(3);
  const io = capture();
  expect(await runCli(['--host', fleet.map((a) => a.address).join(','), 'halt'], io)).toBe(0);
  expect(fleet.map(calls)).toEqual([{ ClearFilters: 1 }, { ClearFilters: 1 }, { ClearFilters: 1 }]);
  expect(io.stdout.trim().split('\n')).toEqual(fleet.map((a) => `${a.address}: halted: 0 filter(s) removed`));
});

test('a host that answers an error at step 2 aborts (exit 2|8); cleanup by resolved number, and not where the error changed nothing', async () => {
  const ok = await fakes(2);
  const [bad] = await fakes(1, { delayMs: 1, behaviour: { code: grpc.status.NOT_FOUND, details: 'no block device /dev/loop0' } });
  const io = capture();
  const code = await runCli(['--json', 'run', planFile(twoSteps([...ok, bad].map((a) => a.address)))], io);
  expect(code).toBe(2 | 8);
  const ev = events(io);
  const abort = ev.find((e) => e.event === 'abort');
  expect(abort).toMatchObject({ step: 'everyone', cause: 'host', reason: expect.stringContaining(`${bad.address} did not take step "everyone": NOT_FOUND`) });
  expect(ev[ev.length - 1]).toMatchObject({ event: 'aborted', stepsDone: 1, touched: 2, cleanup: { ok: 2, failed: 0, unreachable: 0 }, remaining: [], exitCode: 10 });
  // the fake resolves every device to 7:0: cleanup deletes by that number, once per host
  for (const a of ok) expect(a.requests.filter((r) => r.method === 'DeleteFilter').map((r) => (r.req as { device: string }).device)).toEqual(['7:0']);
  expect(calls(bad)).toEqual({ SetFilter: 1 });
});

test('a host that never answers: unreachable, aborted, and its filter may remain (exit 4|8|16), said per host', async () => {
  const [ok] = await fakes(1);
  const [hang] = await fakes(1, { behaviour: 'hang' });
  const io = capture();
  const code = await runCli(['--timeout', '300ms', 'run', planFile(twoSteps([ok.address, hang.address]))], io);
  expect(code).toBe(4 | 8 | 16);
  expect(io.stdout).toMatch(new RegExp(`^${hang.address}: \\[canary\\] unreachable: `, 'm'));
  expect(io.stdout).toMatch(new RegExp(`^${hang.address}: \\[cleanup\\] unreachable: `, 'm'));
  expect(io.stdout).toMatch(new RegExp(`^${hang.address}: \\[left\\] /dev/loop0: may stay in force until its TTL \\(at most \\d+s after it was set\\)$`, 'm'));
  expect(io.stdout).toMatch(new RegExp(`^${ok.address}: \\[cleanup\\] deleted filter on 7:0`, 'm'));
  expect(io.stderr).toMatch(/^aborted in step canary \(0\/2 steps done\): .* cleanup on 2 hosts: 1 ok, 0 failed, 1 unreachable .*exit 28\)$/m);
});

test('a check that fails before the first step: nothing is set, exit 8', async () => {
  const fleet = await fakes(2);
  const io = capture();
  const code = await runCli(['run', planFile(twoSteps(fleet.map((a) => a.address), 'check: { command: "echo down; exit 3", every: 1s }\n'))], io);
  expect(code).toBe(8);
  expect(io.stdout).toMatch(/^check #1 failed before the first step: exit 3 after \d+ms: down$/m);
  expect(fleet.map(calls)).toEqual([{}, {}]);
});

test("checks run in the plan's directory, with IOFILTER_STEP and IOFILTER_CHECK; a hold of 0 is one check", async () => {
  const fleet = await fakes(1);
  fs.writeFileSync(path.join(tmp, 'where.sh'), 'echo "$IOFILTER_STEP $IOFILTER_CHECK" >> where.log\n', { mode: 0o755 });
  const io = capture();
  const code = await runCli(['run', planFile(twoSteps([fleet[0].address, fleet[0].address.replace('127.0.0.1', 'localhost')], 'check: { command: ./where.sh, every: 1s }\n'))], io);
  expect(code).toBe(0);
  expect(fs.readFileSync(path.join(tmp, 'where.log'), 'utf8')).toBe(' 1\ncanary 2\neveryone 3\n');
});

test('cleanup: keep - no delete; the kept filters are listed; exit 0', async () => {
  const fleet = await fakes(2);
  const io = capture();
  const code = await runCli(['run', planFile(twoSteps(fleet.map((a) => a.address)) + 'cleanup: keep\n')], io);
  expect(code).toBe(0);
  expect(fleet.map(calls)).toEqual([{ SetFilter: 2 }, { SetFilter: 2 }]);
  for (const a of fleet) expect(io.stdout).toContain(`${a.address}: [left] /dev/loop0: may stay in force until its TTL`);
  expect(io.stderr).toMatch(/^finished 2 steps; 0 checks; filters kept on 2 hosts \(.*, exit 0\)$/m);
});

test('a plan error: exit 1, the position on stderr, nothing called', async () => {
  const fleet = await fakes(1);
  const io = capture();
  expect(await runCli(['run', planFile(`hosts: [${fleet[0].address}]\nsteps:\n  - set: { device: "7:0", ops: [wrte] }\n`)], io)).toBe(1);
  expect(io.stderr).toMatch(/^iofilterctl: \S+plan-\d+\.yaml:3:33: steps\[0\]\.set\.ops\[0\]: unknown operation "wrte"/);
  expect(io.stdout).toBe('');
  expect(calls(fleet[0])).toEqual({});
  expect(await runCli(['run', path.join(tmp, 'missing.yaml'), '--host', 'a'], capture())).toBe(1);
});

test('on a terminal, stderr carries a status line: step, hosts done, hold left, last check', async () => {
  const fleet = await fakes(1);
  const io = capture(true);
  const f = planFile(`hosts: [${fleet[0].address}]\ncheck: { command: "true", every: 200ms }\nsteps:\n  - { name: only, set: { device: "7:0", ops: [write] }, hold: 1200ms }\n`);
  expect(await runCli(['run', f], io)).toBe(0);
  expect(io.stderr).toMatch(/step 1\/1 only \| hosts 1\/1 \| hold \d+\S* left \| check #\d+ ok \d+s ago/);
  expect(io.stderr).toContain('\r\u001b[Kcleanup | hosts 1/1');
});
