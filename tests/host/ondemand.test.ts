// The on-demand attach policy (issue 25) with a real agent in observe mode on the host
// kernel: nothing attached while no filter exists; attached (and self-tested) by the
// first SetFilter; detached by the last delete, by a clear, and by expiry; Status and
// `iofilterctl status` say so; concurrent calls are serialised; a restarted agent
// detaches pins whose filters expired while it was away.
import { execFile, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { IoFilterClient } from '../../client';
import { RunningAgent, startAgent } from '../helpers/agent';
import { ROOT } from '../helpers/common';
import { createLoop, directIo, LoopDevice } from '../helpers/loop';
import { watchStream } from '../helpers/watch';
import { BUILT, describeIf, hostUnavailableReason } from '../helpers/tier';
import { until } from '../helpers/wait';

const d = describeIf(hostUnavailableReason(BUILT.agent));

/** Whether the kernel still has this program or link (bpftool exits non-zero for an unknown id). */
const exists = (kind: 'prog' | 'link', id: number) => {
  try {
    execFileSync('bpftool', [kind, 'show', 'id', String(id)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};
const progExists = (id: number) => exists('prog', id);
/** The kernel frees a released program after an RCU grace period (tracing programs: RCU tasks trace). */
const gone = (kind: 'prog' | 'link', id: number) => until(() => !exists(kind, id), `${kind} ${id} freed by the kernel`, 30_000, 50);
const pins = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir).sort() : []);

function ctl(...args: string[]): Promise<{ code: number; stdout: string }> {
  return promisify(execFile)(process.execPath, [path.join(ROOT, 'dist', 'client', 'cli.js'), '--timeout', '30s', ...args]).then(
    (r) => ({ code: 0, stdout: r.stdout }),
    (e) => ({ code: e.code, stdout: e.stdout }),
  );
}

d('attach on demand (observe mode, host kernel)', () => {
  const pinDir = `/sys/fs/bpf/iofilter-ondemand-test-${process.pid}`;
  let agent: RunningAgent;
  let client: IoFilterClient;
  let a: LoopDevice;
  let b: LoopDevice;

  const start = async () => {
    agent = await startAgent({ pinDir, attach: 'observe', args: ['--attach-on-demand'] });
    client?.close();
    client = new IoFilterClient(agent.address, { timeoutMs: 30_000 });
  };
  const idle = async () => {
    const st = await client.status();
    expect(st.state).toMatchObject({ attached: false, policy: 'ATTACH_POLICY_ON_DEMAND' });
    expect(st.filters).toEqual([]);
    expect(pins(pinDir)).toEqual([]); // no link, no maps: nothing runs on any bio
  };

  beforeAll(async () => {
    a = createLoop(16);
    b = createLoop(16);
    await start();
  });
  afterAll(async () => {
    client?.close();
    const c = agent && new IoFilterClient(agent.address);
    await c?.detach().catch(() => undefined);
    c?.close();
    await agent?.stop();
    a?.detach();
    b?.detach();
  });

  test('idle at start: policy ON_DEMAND, not attached, no pins; status says so', async () => {
    await idle();
    const r = await ctl('--host', agent.address, 'status');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/; not attached \(attach on demand: no filter\);/);
    expect(r.stdout).toMatch(/backend bpf: no \(attached on demand \(observe\); not attached now\)/);
  });

  test('the first SetFilter attaches and self-tests, and counts I/O right after it returns; the last delete detaches', async () => {
    const f = await client.setFilter({ device: a.path, ranges: [{ start: 0, end: 99, ops: ['OP_WRITE'] }], ttlMs: 600_000 });
    expect(directIo(a.path, 'write', 8, 8).ok).toBe(true); // observe: counted, not failed
    const st = await client.status();
    expect(st.state).toMatchObject({ attached: true, mode: 'MODE_OBSERVE', policy: 'ATTACH_POLICY_ON_DEMAND', adopted: false });
    expect(st.state?.selfTest?.passed).toBe(true);
    expect(st.filters.map((x) => [x.id, x.ranges[0].matched])).toEqual([[f.id, '1']]);
    const progId = st.state!.progIds[0];
    const linkId = st.state!.linkIds[0];
    expect(progExists(progId)).toBe(true);
    expect(exists('link', linkId)).toBe(true);
    expect(pins(pinDir)).toContainEqual(expect.stringMatching(/^link_/));
    const r = await ctl('--host', agent.address, 'status');
    expect(r.stdout).toMatch(/; attached observe \(\S+\) on demand;/);

    expect(await client.deleteFilter({ id: f.id })).toMatchObject({ existed: true, removed: 1 });
    await idle();
    // the link and the program are gone from the kernel, not just unpinned
    await gone('link', linkId);
    await gone('prog', progId);
  });

  test('a delete while idle: nothing existed, nothing attached', async () => {
    expect(await client.deleteFilter(a.path)).toMatchObject({ existed: false, removed: 0 });
    await idle();
  });

  test('a SetFilter refused for bad input or an unknown cgroup attaches nothing', async () => {
    await expect(client.setFilter({ device: a.path, ranges: [{ start: 10, end: 5, ops: ['OP_WRITE'] }] })).rejects.toMatchObject({ code: 3 });
    await idle();
    await expect(client.setFilter({ device: a.path, ranges: [{ start: 0, end: 7, ops: ['OP_WRITE'] }], cgroupPath: '/no/such/cgroup/iofilter-test' })).rejects.toMatchObject({ code: 5 });
    await idle();
  });

  test('ClearFilters detaches; a new SetFilter attaches a new program', async () => {
    await client.setFilter({ device: a.path, wholeDeviceOps: ['OP_WRITE'], ttlMs: 600_000 });
    await client.setFilter({ device: b.path, wholeDeviceOps: ['OP_WRITE'], ttlMs: 600_000 });
    const id1 = (await client.status()).state!.progIds[0];
    expect(await client.clearFilters()).toMatchObject({ removed: 2 });
    await idle();
    await client.setFilter({ device: a.path, wholeDeviceOps: ['OP_WRITE'], ttlMs: 600_000 });
    const st = await client.status();
    expect(st.state?.attached).toBe(true);
    expect(st.state!.progIds[0]).not.toBe(id1);
    await client.clearFilters();
    await idle();
  });

  test('a Watch started while idle is accepted and sees the events of the filter that attaches later', async () => {
    const w = watchStream(client, {});
    await w.accepted;
    try {
      await client.setFilter({ device: a.path, ranges: [{ start: 0, end: 99, ops: ['OP_WRITE'] }], ttlMs: 600_000, eventsPerSecond: 100 });
      directIo(a.path, 'write', 40, 8);
      const io = await until(() => w.ios.find((e) => e.sector === '40'), 'the event of the write at sector 40', 15_000, 20);
      expect(io).toMatchObject({ nrSectors: 8, outcome: 'OUTCOME_WOULD_FAIL' });
      await client.deleteFilter(a.path);
      await idle();
    } finally {
      w.call.cancel();
    }
  });

  test('expiry: the reaper removes the expired filter and detaches, within its tick', async () => {
    await client.setFilter({ device: a.path, wholeDeviceOps: ['OP_WRITE'], ttlMs: 1500 });
    const set = Date.now();
    expect((await client.status()).state?.attached).toBe(true);
    // polled without pause: no answer may say "not attached" while the reaper's detach still has pins
    const seen: string[][] = [];
    await until(async () => {
      if ((await client.status()).state?.attached) return false;
      seen.push(pins(pinDir));
      return true;
    }, 'detached after the TTL', 15_000, 0);
    expect(seen).toEqual([[]]);
    expect(Date.now() - set).toBeGreaterThanOrEqual(1500);
    await idle();
  });

  test('races: SetFilters racing the first attach share one program; a delete racing a set ends consistent', async () => {
    // four clients at once, two per device, on an idle agent
    const sets = await Promise.all([a, b, a, b].map((dev, i) => {
      const c = new IoFilterClient(agent.address, { timeoutMs: 30_000 });
      return c.setFilter({ device: dev.path, ranges: [{ start: i, end: i + 10, ops: ['OP_READ'] }], ttlMs: 600_000 }).finally(() => c.close());
    }));
    expect(sets).toHaveLength(4);
    let st = await client.status();
    expect(st.state?.attached).toBe(true);
    expect(st.state?.progIds).toHaveLength(1);
    // one filter per device: whichever of its two sets the agent served second
    expect(st.filters).toHaveLength(2);
    expect([sets[0].id, sets[2].id]).toContain(st.filters.find((f) => f.device?.minor === a.minor)?.id);
    expect([sets[1].id, sets[3].id]).toContain(st.filters.find((f) => f.device?.minor === b.minor)?.id);
    await client.clearFilters();
    await idle();
    // set and delete of one device, 20 times, each pair sent at once from two clients:
    // whichever lands first, the agent is attached exactly when a filter is left
    const c2 = new IoFilterClient(agent.address, { timeoutMs: 30_000 });
    try {
      for (let i = 0; i < 20; i++) {
        const [, del] = await Promise.all([client.setFilter({ device: a.path, wholeDeviceOps: ['OP_WRITE'], ttlMs: 600_000 }), c2.deleteFilter(a.path)]);
        st = await client.status();
        expect(st.state?.attached).toBe(st.filters.length > 0);
        expect(st.filters.length).toBe(del.existed ? 0 : 1); // the delete came second iff it removed the filter
        if (!del.existed) await client.deleteFilter(a.path);
        await idle();
      }
    } finally {
      c2.close();
    }
  });

  test('an agent killed with a filter set leaves the program attached; the next agent adopts, reaps the expired filter and detaches', async () => {
    await client.setFilter({ device: a.path, wholeDeviceOps: ['OP_WRITE'], ttlMs: 2000 });
    const progId = (await client.status()).state!.progIds[0];
    await agent.kill('SIGKILL');
    expect(pins(pinDir)).toContainEqual(expect.stringMatching(/^link_/)); // the pinned program outlives the agent, its TTL enforced in the kernel
    expect(progExists(progId)).toBe(true);
    await new Promise((r) => setTimeout(r, 2100)); // past the TTL, with no agent to reap it
    expect(progExists(progId)).toBe(true); // still attached: only an agent detaches
    await start();
    await until(async () => !(await client.status()).state?.attached, 'the restarted agent detached', 15_000, 20);
    await idle();
    await gone('prog', progId);
  });
});
