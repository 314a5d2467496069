// The on-demand attach policy (issue 25) with real EIO: an agent started with
// `--attach fmod_ret --attach-on-demand` runs no program while it has no filter; the
// first SetFilter attaches and self-tests before it returns, so the very next write
// fails; the last delete detaches; a filter whose agent died still ends at its TTL in
// the kernel, and the next agent detaches the program it left.
import { Guest, KERNEL, SERIES, PIN_DIR } from '../helpers/guest';
import { describeIf } from '../helpers/tier';
import { vmUnavailableReason } from '../helpers/vm';
import { until } from '../helpers/wait';

const d = describeIf(vmUnavailableReason());
const ON_DEMAND = ['--attach', 'fmod_ret', '--attach-on-demand'];

d(`VM attach on demand on Linux ${KERNEL}: fmod_ret`, () => {
  let g: Guest;
  const pins = async () => (await g.vm.sh(`ls ${PIN_DIR} 2>/dev/null || true`)).split(/\s+/).filter(Boolean);

  beforeAll(async () => {
    g = await Guest.boot(ON_DEMAND);
    expect((await g.client.status()).kernelRelease.startsWith(`${SERIES}.`)).toBe(true);
  }, 600_000);

  afterAll(async () => {
    await g?.client.detach().catch(() => undefined);
    await g?.shutdown();
  }, 60_000);

  const idle = async () => {
    const st = await g.client.status();
    expect(st.state).toMatchObject({ attached: false, policy: 'ATTACH_POLICY_ON_DEMAND' });
    expect(await pins()).toEqual([]);
  };

  test('idle, then each first SetFilter fails the next write; each last delete detaches', async () => {
    await idle();
    expect(await g.io(g.disk, 'write', 0)).toBe('ok');
    for (let round = 0; round < 3; round++) {
      await g.client.setFilter({ device: g.disk, wholeDeviceOps: ['OP_WRITE'], ttlMs: 600_000 });
      expect(await g.io(g.disk, 'write', 0)).toBe('EIO'); // the first I/O after the RPC returned
      const st = await g.client.status();
      expect(st.state).toMatchObject({ attached: true, mode: 'MODE_FMOD_RET', policy: 'ATTACH_POLICY_ON_DEMAND' });
      expect(st.state?.selfTest).toMatchObject({ passed: true, detail: expect.stringMatching(/error EIO/) });
      expect((await g.client.deleteFilter(g.disk)).existed).toBe(true);
      await idle();
      expect(await g.io(g.disk, 'write', 0)).toBe('ok');
    }
  }, 600_000);

  test('agent dead: the kernel ends the fault at the TTL with the program still attached; the next agent detaches it', async () => {
    const ttlMs = 15_000;
    // (EIO until the deadline with the agent dead: the core suite's TTL test)
    await g.client.setFilter({ device: g.disk, wholeDeviceOps: ['OP_WRITE'], ttlMs });
    const after = await g.uptimeMs();
    await g.killAgent('KILL');
    await g.vm.sh(`while [ $(cut -d. -f1 /proc/uptime) -le ${Math.ceil((after + ttlMs) / 1000)} ]; do sleep 0.2; done`, 120_000);
    expect(await g.io(g.disk, 'write', 0)).toBe('ok');
    expect(await pins()).toContainEqual(expect.stringMatching(/^link_/)); // nobody detached it
    await g.startAgent(ON_DEMAND);
    await until(async () => !(await g.client.status()).state?.attached, 'the new agent detached the expired program', 120_000, 500);
    await idle();
  }, 600_000);
});
