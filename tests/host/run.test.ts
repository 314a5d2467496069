// `iofilterctl run` and `halt` as a subprocess (dist/client/cli.js --json) against real
// agents on loopback (observe mode, own ports and pin dirs) and a real partitioned loop
// device: a plan that finishes and cleans up; a check that starts failing in the last
// step aborts at the first failing run of the check; SIGINT aborts; a host that is
// gone at step 2 aborts; halt clears several filters per host in one call each;
// --dry-run sends nothing. Every case ends by asking each agent (Status) what is left.
// The check script counts its own runs in a file, so "at the first failing check" is
// proven by counting, not by timing. Needs root (BPF, loop devices) and `npm run build`.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { IoFilterClient } from '../../client';
import { RunningAgent, startAgent } from '../helpers/agent';
import { createLoop, LoopDevice } from '../helpers/loop';
import { ctl, ctlInterruptedAt } from '../helpers/run-ctl';
import { BUILT, describeIf, hostUnavailableReason } from '../helpers/tier';
import { until } from '../helpers/wait';

const d = describeIf(hostUnavailableReason(BUILT.agent, BUILT.cli));

const lines = (f: string) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8').split('\n').filter(Boolean) : []);

d('iofilterctl run and halt against real agents', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-run-host-'));
  const pinDir = (i: number) => `/sys/fs/bpf/iofilter-run-test-${process.pid}-${i}`;
  const audit = (i: number) => path.join(tmp, `audit-${i}.jsonl`);
  const agents: RunningAgent[] = [];
  const extra: RunningAgent[] = [];
  let disk: LoopDevice;
  let hosts: string[];
  let diskNo: string;
  let partNo: string[];
  let planNo = 0;

  const filtersOn = async (address: string) => {
    const c = new IoFilterClient(address, { timeoutMs: 5000 });
    try {
      return (await c.status()).filters.map((f) => `${f.device!.major}:${f.device!.minor}`).sort();
    } finally {
      c.close();
    }
  };
  const plan = (text: string) => {
    const f = path.join(tmp, `plan-${++planNo}.yaml`);
    fs.writeFileSync(f, text);
    return f;
  };
  /** A check that logs each run to `log` and fails from run `thr` on (the number in file `thr`, once it exists). */
  const checkScript = (name: string) => {
    const log = path.join(tmp, `${name}.log`);
    const thr = path.join(tmp, `${name}.thr`);
    const script = path.join(tmp, `${name}.sh`);
    fs.writeFileSync(log, '');
    fs.writeFileSync(
      script,
      `#!/bin/sh\nn=$(( $(wc -l < ${log}) + 1 ))\necho $n >> ${log}\n` +
        `if [ -f ${thr} ] && [ "$n" -ge "$(cat ${thr})" ]; then echo "unhealthy (run $n)"; exit 1; fi\necho "healthy (run $n)"\n`,
      { mode: 0o755 },
    );
    return { log, thr, script };
  };

  beforeAll(async () => {
    disk = createLoop(40, [16, 16]);
    diskNo = `${disk.major}:${disk.minor}`;
    partNo = disk.partitions.map((p) => `${p.major}:${p.minor}`);
    for (let i = 0; i < 3; i++) agents.push(await startAgent({ pinDir: pinDir(i), attach: 'observe', args: ['--audit-log', audit(i)] }));
    hosts = agents.map((a) => a.address);
  });
  afterAll(async () => {
    for (const a of [...agents, ...extra]) {
      const c = new IoFilterClient(a.address, { timeoutMs: 5000 });
      await c.detach().catch(() => undefined);
      c.close();
      await a.stop();
    }
    for (let i = 0; i < 4; i++) fs.rmSync(pinDir(i), { recursive: true, force: true });
    disk?.detach();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('a plan that finishes: steps in order on a growing set of hosts, filters with TTLs in force while held, all deleted at the end', async () => {
    const chk = checkScript('finish');
    const release = path.join(tmp, 'finish.release');
    // the last step's checks wait until the test has seen what is in force (IOFILTER_STEP is set by the runner)
    fs.appendFileSync(chk.script, `[ "$IOFILTER_STEP" = everyone ] && while [ ! -f ${release} ]; do sleep 0.05; done; exit 0\n`);
    let during: string[][] | undefined;
    const r = await ctl(
      [
        'run',
        plan(`hosts: [${hosts.join(', ')}]
check: { command: ${chk.script}, every: 10s }
steps:
  - name: canary
    hosts: 1
    set: { device: ${disk.path}, ops: [write], ranges: ["0-2047"] }
    hold: 500ms
  - name: slice
    hosts: 50%
    set: { device: ${disk.partitions[0].path}, ops: [read] }
    hold: 500ms
  - name: everyone
    hosts: all
    set: [{ device: "${diskNo}", ops: [read, write] }]
    hold: 500ms
`),
      ],
      async (e) => {
        if (e.event === 'hold' && e.step === 'everyone') {
          during = await Promise.all(hosts.map(filtersOn));
          fs.writeFileSync(release, '');
        }
      },
    );
    expect(r.stderr).toMatch(/^finished 3 steps; \d+ checks; cleanup on 3 hosts: 3 ok, 0 failed, 0 unreachable .*exit 0\)$/m);
    expect(r.code).toBe(0);
    const steps = r.events.filter((e) => e.event === 'step');
    expect(steps.map((e) => [e.step, e.hosts])).toEqual([
      ['canary', hosts.slice(0, 1)],
      ['slice', hosts.slice(0, 2)],
      ['everyone', hosts],
    ]);
    const sets = r.events.filter((e) => e.event === 'host' && e.action === 'set');
    expect(sets.map((e) => `${e.step} ${e.host}`).sort()).toEqual(
      [`canary ${hosts[0]}`, `slice ${hosts[0]}`, `slice ${hosts[1]}`, ...hosts.map((h) => `everyone ${h}`)].sort(),
    );
    for (const e of sets) {
      const step = steps.find((s) => s.step === e.step)!;
      expect(e.ok).toBe(true);
      expect(e.value[0].hasExpiry).toBe(true);
      expect(Number(e.value[0].remainingMs)).toBeGreaterThan(step.holdMs); // the TTL covers the hold ...
      expect(Number(e.value[0].remainingMs)).toBeLessThanOrEqual(step.ttlMs); // ... and is what the plan computed
    }
    // earlier steps' filters stay in force while later steps hold
    expect(during).toEqual([[diskNo, partNo[0]].sort(), [diskNo, partNo[0]].sort(), [diskNo]]);
    const checks = r.events.filter((e) => e.event === 'check');
    expect(checks.length).toBeGreaterThan(0); // the check ran: every() of none would be true
    expect(checks.every((e) => e.ok)).toBe(true);
    expect(checks).toHaveLength(lines(chk.log).length);
    expect(r.events.filter((e) => e.event === 'held').map((e) => e.step)).toEqual(['canary', 'slice', 'everyone']);
    expect(r.events[r.events.length - 1]).toMatchObject({ event: 'finished', stepsDone: 3, touched: 3, cleanup: { ok: 3, failed: 0, unreachable: 0 }, remaining: [] });
    for (const h of hosts) expect(await filtersOn(h)).toEqual([]);
    // cleanup deleted each filter it set (unscoped: by the id its set answered with), and nothing else
    const deletes = (i: number) => lines(audit(i)).map((l) => JSON.parse(l)).filter((a) => a.rpc === 'DeleteFilter').map((a) => `${a.request.device}#${a.request.id}`).sort();
    // the id of the last set on each device: a later step's set replaced the earlier filter
    const setIds = (i: number) => {
      const last = new Map<string, number>();
      for (const e of sets.filter((x) => x.host === hosts[i])) last.set(`${e.value[0].device.major}:${e.value[0].device.minor}`, e.value[0].id);
      return [...last.values()].map((id) => `#${id}`).sort();
    };
    expect([0, 1, 2].map((i) => setIds(i).length)).toEqual([2, 2, 1]);
    expect([0, 1, 2].map(deletes)).toEqual([0, 1, 2].map(setIds));
  });

  test('a check that starts failing during the last step aborts at its first failing run; no filter is left on any host', async () => {
    const chk = checkScript('fail');
    const r = await ctl(
      [
        'run',
        plan(`hosts: [${hosts.join(', ')}]
check: { command: ${chk.script}, every: 2s }
steps:
  - { name: canary, hosts: 1, set: { device: ${disk.path}, ops: [write] }, hold: 400ms }
  - { name: slice, hosts: 2, set: { device: ${disk.path}, ops: [write] }, hold: 400ms }
  - { name: everyone, hosts: all, set: { device: ${disk.path}, ops: [write, read] }, hold: 60s }
`),
      ],
      (e) => {
        // health goes bad from the second run of the check after the last step began
        if (e.event === 'step' && e.step === 'everyone') fs.writeFileSync(chk.thr, String(lines(chk.log).length + 2));
      },
    );
    expect(r.code).toBe(8);
    const failAt = Number(fs.readFileSync(chk.thr, 'utf8'));
    expect(lines(chk.log)).toHaveLength(failAt); // not one run more: it stopped at the first failure
    const checks = r.events.filter((e) => e.event === 'check');
    expect(checks.map((e) => e.ok)).toEqual([...Array(failAt - 1).fill(true), false]);
    expect(checks[checks.length - 1]).toMatchObject({ step: 'everyone', n: failAt, exitCode: 1, output: `unhealthy (run ${failAt})` });
    const i = r.events.indexOf(checks[checks.length - 1]);
    expect(r.events[i + 1]).toMatchObject({ event: 'abort', step: 'everyone', cause: 'check' });
    expect(r.events.slice(i + 1).map((e) => e.event)).toEqual(['abort', 'cleanup', 'host', 'host', 'host', 'aborted']);
    expect(r.events.filter((e) => e.event === 'held').map((e) => e.step)).toEqual(['canary', 'slice']);
    expect(r.events[r.events.length - 1]).toMatchObject({ event: 'aborted', stepsDone: 2, cleanup: { ok: 3, failed: 0, unreachable: 0 }, remaining: [], exitCode: 8 });
    for (const h of hosts) expect(await filtersOn(h)).toEqual([]);
  });

  test('SIGINT while a step holds aborts the same way: cleanup on every host touched, exit 8', async () => {
    const chk = checkScript('sigint');
    const r = await ctlInterruptedAt('everyone', [
      'run',
      plan(`hosts: [${hosts.join(', ')}]
check: { command: ${chk.script}, every: 2s }
steps:
  - { name: canary, hosts: 1, set: { device: ${disk.path}, ops: [write] }, hold: 300ms }
  - { name: everyone, hosts: all, set: { device: ${disk.partitions[1].path}, ops: [read] }, hold: 60s }
`),
    ]);
    expect(r.sent).toBe(true);
    expect(r.code).toBe(8);
    expect(r.events.find((e) => e.event === 'abort')).toEqual({ event: 'abort', step: 'everyone', cause: 'signal', reason: 'interrupted (SIGINT)' });
    const deleted = r.events.filter((e) => e.event === 'host' && e.action === 'delete');
    expect(deleted.map((e) => e.host).sort()).toEqual([...hosts].sort());
    expect(deleted.find((e) => e.host === hosts[0])!.value.map((v: { existed: boolean }) => v.existed)).toEqual([true, true]);
    expect(r.events[r.events.length - 1]).toMatchObject({ event: 'aborted', stepsDone: 1, cleanup: { ok: 3, failed: 0, unreachable: 0 }, remaining: [] });
    expect(r.stderr).toMatch(/^aborted in step everyone \(1\/2 steps done\): interrupted \(SIGINT\);/m);
    for (const h of hosts) expect(await filtersOn(h)).toEqual([]);
  });

  test('a host that is gone at step 2 aborts (exit 4|8|16): cleanup on the others, and the gone host has nothing', async () => {
    const gone = await startAgent({ pinDir: pinDir(3), attach: 'observe' });
    const fleet = [hosts[0], hosts[1], gone.address];
    const chk = checkScript('gone');
    const go = path.join(tmp, 'gone.go');
    // run 2 (the canary's hold) waits until the test has killed the third agent
    fs.writeFileSync(chk.script, `#!/bin/sh\nn=$(( $(wc -l < ${chk.log}) + 1 ))\necho $n >> ${chk.log}\n[ "$n" -eq 2 ] && while [ ! -f ${go} ]; do sleep 0.05; done\nexit 0\n`);
    const r = await ctl(
      [
        'run',
        plan(`hosts: [${fleet.join(', ')}]
check: { command: ${chk.script}, every: 20s }
steps:
  - { name: canary, hosts: 2, set: { device: ${disk.path}, ops: [write] }, hold: 0s }
  - { name: everyone, hosts: all, set: { device: ${disk.path}, ops: [write] }, hold: 60s }
`),
      ],
      async (e) => {
        if (e.event === 'hold' && e.step === 'canary') {
          await gone.kill('SIGKILL');
          fs.writeFileSync(go, '');
        }
      },
    );
    expect(r.code).toBe(4 | 8 | 16);
    expect(r.events.find((e) => e.event === 'host' && e.host === gone.address && e.action === 'set')).toMatchObject({ step: 'everyone', ok: false, error: { kind: 'unreachable' } });
    expect(r.events.find((e) => e.event === 'abort')).toMatchObject({ step: 'everyone', cause: 'host', reason: expect.stringContaining(`${gone.address} did not take step "everyone": unreachable`) });
    expect(r.events[r.events.length - 1]).toMatchObject({
      event: 'aborted',
      stepsDone: 1,
      cleanup: { ok: 2, failed: 0, unreachable: 1 },
      remaining: [{ host: gone.address, filters: [disk.path] }],
      exitCode: 28,
    });
    for (const h of fleet.slice(0, 2)) expect(await filtersOn(h)).toEqual([]);
    // the killed agent's pins are adopted by a new one: it never got a filter
    const back = await startAgent({ pinDir: pinDir(3), attach: 'observe' });
    extra.push(back);
    expect(await filtersOn(back.address)).toEqual([]);
  });

  test('halt on 3 hosts with 3 filters each: one ClearFilters per host (audited), none left', async () => {
    for (const h of hosts) {
      const c = new IoFilterClient(h, { timeoutMs: 5000 });
      for (const dev of [disk.path, ...disk.partitions.map((p) => p.path)]) await c.setFilter({ device: dev, wholeDeviceOps: ['OP_WRITE'], ttlMs: 600_000 });
      c.close();
      expect(await filtersOn(h)).toHaveLength(3);
    }
    const before = [0, 1, 2].map((i) => lines(audit(i)).length);
    const r = await ctl(['--host', hosts.join(','), 'halt']);
    expect(r.code).toBe(0);
    expect(r.events).toEqual(hosts.map((host) => ({ host, ok: true, value: { removed: 3 }, ms: expect.any(Number) })));
    for (const h of hosts) expect(await filtersOn(h)).toEqual([]);
    for (let i = 0; i < 3; i++) expect(lines(audit(i)).slice(before[i]).map((l) => [JSON.parse(l).rpc, JSON.parse(l).result])).toEqual([['ClearFilters', 'ok']]);
    const again = await ctl(['--host', hosts.join(','), 'halt']);
    expect(again.code).toBe(0);
    expect(again.events.map((e) => e.value)).toEqual(hosts.map(() => ({ removed: 0 })));
  });

  test('--dry-run sends no RPC to any agent and runs no check', async () => {
    const chk = checkScript('dry');
    fs.rmSync(chk.log);
    const rpcs = () => agents.map((a) => (a.logs().match(/"msg":"rpc"/g) ?? []).length);
    // Log lines reach us later than answers: instead of sleeping, a marker call to each
    // agent (a DeleteFilter of a device that does not exist, named in its audit log line)
    // whose line we wait for; lines are written in order, so every earlier one is in.
    let markers = 0;
    const marker = () => {
      const dev = `7:${1048575 - markers++}`;
      return Promise.all(
        agents.map(async (a) => {
          const c = new IoFilterClient(a.address, { timeoutMs: 5000 });
          expect(await c.deleteFilter(dev)).toMatchObject({ existed: false });
          c.close();
          await until(() => a.logs().includes(`"device":"${dev}"`), `the log line of marker ${dev} on ${a.address}`);
        }),
      );
    };
    await marker();
    const before = rpcs();
    const r = await ctl(['run', '--dry-run', plan(`hosts: [${hosts.join(', ')}]\ncheck: { command: ${chk.script} }\nsteps:\n  - { hosts: 1, set: { device: ${disk.path}, ops: [write] }, hold: 1m }\n`)]);
    expect(r.code).toBe(0);
    expect(r.events).toEqual([expect.objectContaining({ event: 'plan', dryRun: true, hosts, steps: [expect.objectContaining({ hosts: hosts.slice(0, 1), holdMs: 60_000 })] })]);
    expect(r.stderr).toBe('dry run: nothing was sent, no check was run\n');
    await marker();
    expect(rpcs()).toEqual(before.map((n) => n + 1)); // the marker's own line, and nothing from the CLI
    expect(fs.existsSync(chk.log)).toBe(false);
  });
});
