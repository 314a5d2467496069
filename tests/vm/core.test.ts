// The core real-EIO subset, run on EVERY kernel of the matrix (IOFILTER_KERNEL=5.10,
// 6.1, 6.12, 7.2): both enforcing modes (or, where the kernel makes a mode unsafe or
// impossible, its refusal with the reason), ranges, partitions both ways, the empty
// flush, observe counting, max failures (or its refusal where the kernel cannot count
// exactly), probability (one draw per bio, split bios judged once), and a TTL the
// kernel enforces with the agent verifiably dead. Every case is recorded in the
// kernel matrix (tests/helpers/matrix.ts).
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Guest, KERNEL, SERIES, PIN_DIR } from '../helpers/guest';
import { jestTimeout, matrixCase, matrixRefused, setRelease, writeMatrix } from '../helpers/matrix';
import { describeIf } from '../helpers/tier';
import { vmUnavailableReason } from '../helpers/vm';
import { until } from '../helpers/wait';

const d = describeIf(vmUnavailableReason());

/** What each kernel of the matrix is expected to offer (measured; see README "Kernel matrix"). */
// kprobe + bpf_override_return oopses where ftrace's callbacks sit at odd addresses (native/
// facts.cc): the agent refuses it up front there. Which build has them odd is the layout's
// accident: the 7.2 test build had, until the fragment gained DM_DELAY, XFS and the rest
// (December 2026); the build since has them even, and kprobe mode attaches and fails I/O.
const KPROBE_REFUSED = false;
const KPROBE_UNPINNED = SERIES === '5.10'; // no BPF perf links before 5.15
const FETCH_ATOMICS = SERIES !== '5.10'; // BPF atomic fetch-add: 5.12+
const DISKSEQ = SERIES !== '5.10'; // gendisk->diskseq: 5.15+

/** binomial(n, p) is within k standard deviations of its mean */
const within = (x: number, n: number, p: number, k = 5) => Math.abs(x - n * p) <= k * Math.sqrt(n * p * (1 - p));

d(`VM core on Linux ${KERNEL}: real EIO from should_fail_bio`, () => {
  let g: Guest;

  beforeAll(async () => {
    g = await Guest.boot();
    const st = await g.client.status();
    setRelease(st.kernelRelease);
    expect(st.kernelRelease.startsWith(`${SERIES}.`)).toBe(true);
  }, 600_000);

  afterAll(async () => {
    writeMatrix(KERNEL, 'core');
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
    expect(s2.features?.fetchAtomics).toBe(SERIES !== '5.10');
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

  describe('fmod_ret: max failures and probability', () => {
    beforeAll(() => g.attach('fmod_ret'), 120_000);
    afterEach(() => g.client.clearFilters());

    // BPF atomic fetch-add (5.12+) counts the first K exactly; without it the table refuses
    const exactMaxFailures = async () => {
      await g.client.setFilter({ device: g.disk, wholeDeviceOps: ['OP_WRITE'], maxFailures: 3 });
      const seen = [];
      for (let i = 0; i < 6; i++) seen.push(await g.io(g.disk, 'write', i * 8));
      expect(seen).toEqual(['EIO', 'EIO', 'EIO', 'ok', 'ok', 'ok']);
      const f = await g.filterOf(g.disk);
      expect(f).toMatchObject({ maxFailures: '3', failures: '3' });
      expect(f?.ranges[0]).toMatchObject({ matched: '6', failed: '3' });
    };
    const refusedMaxFailures = async () => {
      const err = await g.client.setFilter({ device: g.disk, wholeDeviceOps: ['OP_WRITE'], maxFailures: 3 }).then(
        () => null,
        (e: { code: number; details: string }) => e,
      );
      expect({ code: err && grpc.status[err.code], details: err?.details }).toEqual({
        code: 'FAILED_PRECONDITION',
        details: expect.stringMatching(/max_failures needs BPF atomic fetch-add \(Linux 5\.12\+\).*this kernel is 5\.10\.\d+/),
      });
      expect(await g.filterOf(g.disk)).toBeUndefined(); // refused whole: nothing was set
      expect(await g.io(g.disk, 'write', 0)).toBe('ok');
      matrixRefused(KERNEL, 'fmod_ret', 'max failures', err!.details);
    };
    if (FETCH_ATOMICS) test('max failures: exactly the first K matching I/Os fail', matrixCase(KERNEL, 'fmod_ret', 'max failures', exactMaxFailures));
    else test('max failures: refused with the kernel named (no BPF fetch atomics before 5.12); nothing set', refusedMaxFailures);

    test('probability 0.5: about half of 120 writes fail, and Status counts exactly those', matrixCase(KERNEL, 'fmod_ret', 'probability', async () => {
      await g.client.setFilter({ device: g.disk, wholeDeviceOps: ['OP_WRITE'], probability: 0.5 });
      const r = await g.vm.exec(
        `n=0; for i in $(seq 120); do dd if=/dev/zero of=${g.disk} bs=4096 count=1 seek=$i oflag=direct conv=notrunc status=none 2>/dev/null || n=$((n+1)); done; echo $n`,
      );
      const failed = Number(r.stdout.trim());
      expect(within(failed, 120, 0.5)).toBe(true);
      expect((await g.filterOf(g.disk))?.ranges[0]).toMatchObject({ matched: '120', failed: String(failed) });
    }));

    test('probability 0.5 over bios spanning 8 ranges that the kernel splits into 8: about half fail, each counted once', matrixCase(KERNEL, 'fmod_ret', 'probability, split bios', async () => {
      // 4 KiB pieces (8 sectors, one range each): a 32 KiB direct write is one bio the
      // kernel splits into 8, resubmitting the remainder 7 times
      const name = path.basename(g.other);
      const q = `/sys/block/${name}/queue/max_sectors_kb`;
      const original = await g.vm.sh(`cat ${q}`);
      /** Write requests the disk completed (field 5 of /sys/block/X/stat): what the split made of the bios. */
      const writeRequests = async () => Number((await g.vm.sh(`cat /sys/block/${name}/stat`)).trim().split(/\s+/)[4]);
      await g.vm.sh(`echo 4 > ${q}`);
      try {
        expect(await g.vm.sh(`cat ${q}`)).toBe('4');
        const before = await writeRequests();
        const ranges = Array.from({ length: 8 }, (_, i) => ({ start: i * 8, end: i * 8 + 7, ops: ['OP_WRITE' as const] }));
        await g.client.setFilter({ device: g.other, ranges, probability: 0.5 });
        const n = 200;
        const r = await g.vm.exec(
          `n=0; for i in $(seq ${n}); do dd if=/dev/zero of=${g.other} bs=32768 count=1 oflag=direct conv=notrunc status=none 2>/dev/null || n=$((n+1)); done; echo $n`,
          300_000,
        );
        const failed = Number(r.stdout.trim());
        // the kernel did split: each write that passed reached the disk as 8 requests (a
        // failed one ends at should_fail_bio, before the split)
        expect((await writeRequests()) - before).toBe(8 * (n - failed));
        // one draw per bio: binomial(200, 0.5); one draw per range or per piece would fail nearly all
        expect(within(failed, n, 0.5)).toBe(true);
        const f = await g.filterOf(g.other);
        expect(f?.matchedIos).toBe(String(n)); // the resubmitted remainders were not judged again
        expect(f?.failedIos).toBe(String(failed));
        expect(f?.ranges.map((x) => x.matched)).toEqual(Array(8).fill(String(n)));
        expect(f?.ranges.map((x) => x.failed)).toEqual(Array(8).fill(String(failed)));
      } finally {
        await g.vm.sh(`echo ${original} > ${q}`);
      }
      expect(await g.vm.sh(`cat ${q}`)).toBe(original); // restored for the tests after this one
    }, 400_000), jestTimeout(400_000));
  });

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
      `node -e "const n=require('./dist/native/index.js');const l=n.lock('${PIN_DIR}');n.adopt(l).then(f=>{console.log(JSON.stringify(f.listFilters().map(x=>x.remainingMs)));f.close();l.release();})"`,
    );
    expect(JSON.parse(left)).toEqual([0]);
    const st = await g.startAgent(['--attach', 'none']);
    expect(st.state).toMatchObject({ attached: true, adopted: true, mode: 'MODE_FMOD_RET' });
  }, 300_000), jestTimeout(300_000));

  // A loop device re-attached to another file under a live filter is another disk. With
  // the agent frozen (SIGSTOP: only the kernel decides), the write to the new medium
  // succeeds where the kernel has diskseq (5.15+) and still fails before it (5.10: the
  // agent-side fingerprint); once the agent runs again it removes the filter everywhere.
  test('device identity: a loop device re-attached under a live filter is not failed by it (kernel 5.15+, agent before)', matrixCase(KERNEL, 'fmod_ret', 'new medium, same number', async () => {
    await g.attach('fmod_ret');
    const f = await g.client.setFilter({ device: g.other, wholeDeviceOps: ['OP_WRITE'], ttlMs: 600_000 });
    expect(f.diskseq === '0').toBe(!DISKSEQ);
    expect(await g.io(g.other, 'write', 0)).toBe('EIO');
    const dd = `dd if=/dev/zero of=${g.other} bs=4096 count=1 oflag=direct conv=notrunc status=none`;
    const r = await g.vm.exec(
      `kill -STOP ${g.agentPid} && losetup -d ${g.other} && truncate -s 64M /dev/shm/d3b.img && losetup ${g.other} /dev/shm/d3b.img && ` +
        `{ ${dd} 2>/dev/null && echo WRITE=ok || echo WRITE=failed; }; kill -CONT ${g.agentPid}`,
    );
    expect(r.stdout.trim()).toBe(DISKSEQ ? 'WRITE=ok' : 'WRITE=failed');
    await until(async () => !(await g.client.status()).filters.some((x) => x.id === f.id), 'the agent removed the filter of the old medium', 120_000, 500);
    expect(await g.io(g.other, 'write', 0)).toBe('ok');
    expect((await g.vm.exec('grep -c "removed a filter whose disk has a new medium" /dev/shm/iofilter-agent.log')).stdout.trim()).toBe('1');
  }, 200_000), jestTimeout(200_000));

  test('the kernel stayed healthy', async () => {
    expect(await g.oopses()).toBe('');
  });
});
