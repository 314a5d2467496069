// The core real-EIO subset, run on EVERY kernel of the matrix (IOFILTER_KERNEL=5.10,
// 6.1, 6.12, 7.2): both enforcing modes (or, where the kernel makes a mode unsafe or
// impossible, its refusal with the reason), ranges, partitions both ways, the empty
// flush, observe counting, and a TTL the kernel enforces with the agent verifiably
// dead. Every case is recorded in the kernel matrix (tests/helpers/matrix.ts).
import { Guest, KERNEL, PIN_DIR } from '../helpers/guest';
import { matrixCase, matrixRefused, setRelease, writeMatrix } from '../helpers/matrix';
import { describeIf } from '../helpers/tier';
import { vmUnavailableReason } from '../helpers/vm';

const d = describeIf(vmUnavailableReason());

/** What each kernel of the matrix is expected to offer (measured; see README "Kernel matrix"). */
const KPROBE_REFUSED = KERNEL === '7.2'; // kprobe + bpf_override_return oopses there: refused up front
const KPROBE_UNPINNED = KERNEL === '5.10'; // no BPF perf links before 5.15

d(`VM core on Linux ${KERNEL}: real EIO from should_fail_bio`, () => {
  let g: Guest;

  beforeAll(async () => {
    g = await Guest.boot();
    const st = await g.client.status();
    setRelease(st.kernelRelease);
    expect(st.kernelRelease.startsWith(`${KERNEL}.`)).toBe(true);
  }, 600_000);

  afterAll(async () => {
    writeMatrix(KERNEL);
    await g?.shutdown();
  }, 60_000);

  test('capabilities: what this kernel offers, and why not', async () => {
    const st = await g.client.status();
    const caps = Object.fromEntries(st.capabilities.map((c) => [c.mode, c]));
    expect(caps.MODE_FMOD_RET.available).toBe(true);
    expect(caps.MODE_OBSERVE.available).toBe(true);
    expect(caps.MODE_KPROBE.available).toBe(!KPROBE_REFUSED);
    if (KPROBE_REFUSED) {
      expect(caps.MODE_KPROBE.reason).toMatch(/refused, a kprobe on should_fail_bio would crash this kernel.*odd address.*use fmod_ret/);
      matrixRefused(KERNEL, 'kprobe', 'all cases', caps.MODE_KPROBE.reason);
    }
    if (KPROBE_UNPINNED) expect(caps.MODE_KPROBE.reason).toMatch(/not pinnable here.*end when the agent exits/);
    // auto never picks a mode known unsafe here, and proves its hook at attach
    await g.client.detach();
    const a = await g.client.attach('auto');
    expect(a).toMatchObject({ attached: true, mode: 'MODE_FMOD_RET' });
    const s2 = await g.client.status();
    expect(s2.state?.selfTest).toMatchObject({ passed: true, detail: expect.stringMatching(/error EIO, counted 1 matched, 1 failed/) });
    expect(s2.features?.fetchAtomics).toBe(KERNEL !== '5.10');
  });

  const modes = (['fmod_ret', 'kprobe'] as const).filter((m) => !(m === 'kprobe' && KPROBE_REFUSED));
  for (const mode of modes) {
    describe(mode, () => {
      beforeAll(async () => {
        await g.attach(mode);
        const st = await g.client.status();
        expect(st.state?.pinned).toBe(!(mode === 'kprobe' && KPROBE_UNPINNED));
      }, 120_000);

      test('whole device: writes fail with EIO, reads succeed; delete restores writes', matrixCase(KERNEL, mode, 'whole device', async () => {
        await g.client.setFilter({ device: g.disk, wholeDeviceOps: ['OP_WRITE'] });
        expect(await g.io(g.disk, 'write', 0)).toBe('EIO');
        expect(await g.io(g.disk, 'write', 100_000)).toBe('EIO');
        expect(await g.io(g.disk, 'read', 0)).toBe('ok');
        expect((await g.client.deleteFilter(g.disk)).existed).toBe(true);
        expect(await g.io(g.disk, 'write', 0)).toBe('ok');
      }));

      test('ranges: inside, overlapping either edge, spanning fail; adjacent and outside succeed; counters exact', matrixCase(KERNEL, mode, 'ranges', async () => {
        await g.client.setFilter({ device: g.disk, ranges: [{ start: 1000, end: 1999, ops: ['OP_WRITE'] }] });
        const seen = {
          inside: await g.io(g.disk, 'write', 1200),
          overlapStart: await g.io(g.disk, 'write', 996),
          overlapEnd: await g.io(g.disk, 'write', 1996),
          spanning: await g.io(g.disk, 'write', 992, 1024),
          adjacentBefore: await g.io(g.disk, 'write', 992),
          adjacentAfter: await g.io(g.disk, 'write', 2000),
          outside: await g.io(g.disk, 'write', 50_000),
          readInside: await g.io(g.disk, 'read', 1200),
        };
        expect(seen).toEqual({
          inside: 'EIO', overlapStart: 'EIO', overlapEnd: 'EIO', spanning: 'EIO',
          adjacentBefore: 'ok', adjacentAfter: 'ok', outside: 'ok', readInside: 'ok',
        });
        expect((await g.filterOf(g.disk))?.ranges.map((r) => [r.matched, r.failed])).toEqual([['4', '4']]);
        await g.client.deleteFilter(g.disk);
        expect(await g.io(g.disk, 'write', 1200)).toBe('ok');
      }));

      test('partition filter: I/O through the whole disk onto its sectors fails; the other partition is untouched', matrixCase(KERNEL, mode, 'partition -> disk', async () => {
        const [p1, p2] = g.parts;
        await g.client.setFilter({ device: p1.path, ranges: [{ start: 100, end: 199, ops: ['OP_WRITE'] }] });
        expect(await g.io(p1.path, 'write', 150)).toBe('EIO');
        expect(await g.io(g.pdisk, 'write', p1.start + 150)).toBe('EIO');
        expect(await g.io(g.pdisk, 'write', p1.start + 200)).toBe('ok');
        expect(await g.io(p2.path, 'write', 150)).toBe('ok');
        await g.client.deleteFilter(p1.path);
      }));

      test('whole-disk filter: I/O sent through a partition onto its sectors fails', matrixCase(KERNEL, mode, 'disk -> partition', async () => {
        const p2 = g.parts[1];
        await g.client.setFilter({ device: g.pdisk, ranges: [{ start: p2.start + 64, end: p2.start + 71, ops: ['OP_READ'] }] });
        expect(await g.io(p2.path, 'read', 60)).toBe('EIO');
        expect(await g.io(p2.path, 'read', 72)).toBe('ok');
        await g.client.deleteFilter(g.pdisk);
      }));

      test('an empty flush passes a write-range filter and fails a flush filter; no oops', matrixCase(KERNEL, mode, 'empty flush', async () => {
        await g.client.setFilter({ device: g.disk, ranges: [{ start: 0, end: 99, ops: ['OP_WRITE'] }] });
        expect(await g.fsync(g.disk)).toBe('ok');
        expect(await g.io(g.disk, 'write', 0)).toBe('EIO'); // the filter is live
        await g.client.setFilter({ device: g.disk, ranges: [{ start: 0, end: 99, ops: ['OP_FLUSH'] }] });
        expect(await g.fsync(g.disk)).toBe('EIO');
        expect(await g.io(g.disk, 'write', 0)).toBe('ok'); // a plain write carries no flush
        await g.client.deleteFilter(g.disk);
        expect(await g.fsync(g.disk)).toBe('ok');
        expect(await g.oopses()).toBe('');
      }));
    });
  }

  test('observe: the same ranges are counted, nothing fails', matrixCase(KERNEL, 'observe', 'ranges counted', async () => {
    await g.attach('observe');
    await g.client.setFilter({ device: g.disk, ranges: [{ start: 1000, end: 1999, ops: ['OP_WRITE'] }] });
    const seen = [await g.io(g.disk, 'write', 1200), await g.io(g.disk, 'write', 996), await g.io(g.disk, 'write', 2000), await g.io(g.disk, 'read', 1200)];
    expect(seen).toEqual(['ok', 'ok', 'ok', 'ok']);
    expect((await g.filterOf(g.disk))?.ranges.map((r) => [r.matched, r.failed])).toEqual([['2', '2']]);
    await g.client.deleteFilter(g.disk);
  }));

  test('TTL: the kernel stops failing I/O at expiry with the agent verifiably dead', matrixCase(KERNEL, 'fmod_ret', 'TTL, agent dead', async () => {
    await g.attach('fmod_ret');
    const ttlMs = 15_000;
    const before = await g.uptimeMs();
    await g.client.setFilter({ device: g.disk, wholeDeviceOps: ['OP_WRITE'], ttlMs });
    const after = await g.uptimeMs();
    // the kernel's deadline is in [before + ttl, after + ttl] of the guest's CLOCK_BOOTTIME
    await g.killAgent('KILL'); // throws unless the process is gone: no reaper can run
    const dead = await g.uptimeMs();
    expect(dead).toBeLessThan(before + ttlMs); // dead before expiry: whatever happens next is the kernel's doing
    const early = await g.io(g.disk, 'write', 0);
    const earlyEnd = await g.uptimeMs();
    expect(earlyEnd).toBeLessThan(before + ttlMs); // judged before the deadline
    expect(early).toBe('EIO');
    // wait on the guest's own clock, not ours: the emulator's speed does not matter
    await g.vm.sh(`while [ $(cut -d. -f1 /proc/uptime) -le ${Math.ceil((after + ttlMs) / 1000)} ]; do sleep 0.2; done`, 120_000);
    expect(await g.io(g.disk, 'write', 0)).toBe('ok');
    // nobody removed it: the filter is still in the maps, expired (read without an agent)
    const left = await g.vm.sh(
      `node -e "const n=require('./build/Release/iofilter.node');const l=n.lock('${PIN_DIR}');n.adopt(l).then(f=>{console.log(JSON.stringify(f.listFilters().map(x=>x.remainingMs)));f.close();l.release();})"`,
    );
    expect(JSON.parse(left)).toEqual([0]);
    const st = await g.startAgent(['--attach', 'none']);
    expect(st.state).toMatchObject({ attached: true, adopted: true, mode: 'MODE_FMOD_RET' });
  }));

  test('the kernel stayed healthy', async () => {
    expect(await g.oopses()).toBe('');
  });
});
