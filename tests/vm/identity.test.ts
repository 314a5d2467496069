// Device identity under real EIO: a loop device re-attached to another file under a
// live fmod_ret filter is another disk. With the agent frozen (SIGSTOP, so only the
// kernel can decide), a write to the new medium succeeds where the kernel has diskseq
// (5.15+), and still fails before it (5.10: the weaker, agent-side guarantee); once
// the agent runs again it removes the filter, and writes succeed on every kernel.
import { Guest, KERNEL } from '../helpers/guest';
import { matrixCase, setRelease, writeMatrix } from '../helpers/matrix';
import { describeIf } from '../helpers/tier';
import { vmUnavailableReason } from '../helpers/vm';
import { until } from '../helpers/wait';

const d = describeIf(vmUnavailableReason());
const DISKSEQ = KERNEL !== '5.10'; // gendisk->diskseq: 5.15+

d(`VM device identity on Linux ${KERNEL}`, () => {
  let g: Guest;
  beforeAll(async () => {
    g = await Guest.boot();
    setRelease((await g.client.status()).kernelRelease);
    await g.attach('fmod_ret');
  }, 600_000);
  afterAll(async () => {
    writeMatrix(KERNEL, 'identity');
    await g?.shutdown();
  }, 60_000);

  test(
    'a loop device re-attached under a live filter: the kernel (5.15+) or the agent (before) stops failing it',
    matrixCase(KERNEL, 'fmod_ret', 'new medium, same number', async () => {
      const f = await g.client.setFilter({ device: g.other, wholeDeviceOps: ['OP_WRITE'], ttlMs: 600_000 });
      expect(f.diskseq === '0').toBe(!DISKSEQ);
      expect(await g.io(g.other, 'write', 0)).toBe('EIO');
      // frozen agent: nothing but the kernel judges the write to the new medium
      const dd = `dd if=/dev/zero of=${g.other} bs=4096 count=1 oflag=direct conv=notrunc status=none`;
      const r = await g.vm.exec(
        `kill -STOP ${g.agentPid} && losetup -d ${g.other} && truncate -s 64M /dev/shm/d3b.img && losetup ${g.other} /dev/shm/d3b.img && ` +
          `{ ${dd} 2>/dev/null && echo WRITE=ok || echo WRITE=failed; }; kill -CONT ${g.agentPid}`,
      );
      expect(r.stdout.trim()).toBe(DISKSEQ ? 'WRITE=ok' : 'WRITE=failed');
      await until(async () => !(await g.client.status()).filters.some((x) => x.id === f.id), 'the agent removed the filter of the old medium', 120_000, 500);
      expect(await g.io(g.other, 'write', 0)).toBe('ok');
      expect((await g.vm.exec('grep -c "removed a filter whose disk has a new medium" /dev/shm/iofilter-agent.log')).stdout.trim()).toBe('1');
    }),
    300_000,
  );
});
