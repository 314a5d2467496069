// The dm backend in the VM (IOFILTER_KERNEL, 6.1 by default: dm and dm-flakey built
// in, dmsetup from the host root): a two-segment dm-linear device over two loop
// devices, the agent attached to nothing (auto picks dm), real EIO from error and
// flakey segments with I/O running elsewhere, the table byte-identical after delete
// and no data changed outside the faulted ranges, a TTL that ends at its deadline with
// the agent SIGKILLed (the watchdog restores), the restart path with agent and watchdog
// both killed, ext4 on a wrapped device under a write fault (EIO to the filesystem;
// after delete and remount the synced file is unchanged and fsck is clean), wrap and
// unwrap, and each refusal leaving the table as it was.
import * as grpc from '@grpc/grpc-js';
import { kernelVersion } from '../../agent/backends/dm/table';
import { BUILT_WITH_BLKINJECT, Guest, KERNEL, SERIES } from '../helpers/guest';
import { grpcRefusalOf as refusalOf } from '../helpers/refusal';
import { describeIf } from '../helpers/tier';
import { vmUnavailableReason } from '../helpers/vm';

const d = describeIf(vmUnavailableReason());
jest.setTimeout(900_000); // TCG on a loaded machine: one guest command can take seconds

const STATE = '/dev/shm/iofilter-state';
const AGENT = ['--attach', 'none', '--state-dir', STATE];
const DM = 'DM_DISABLE_UDEV=1 dmsetup --noudevsync';
const NAME = 'iof-lv';
const LV = `/dev/mapper/${NAME}`;
const SEG = 32768; // sectors per segment: 16 MiB on each loop device
const RW = ['OP_READ', 'OP_WRITE', 'OP_DISCARD', 'OP_WRITE_ZEROES'] as const;
const W = ['OP_WRITE', 'OP_FLUSH', 'OP_DISCARD', 'OP_WRITE_ZEROES'] as const;

d(`VM dm backend on Linux ${KERNEL}`, () => {
  let g: Guest;
  let original = '';
  const table = () => g.vm.sh(`${DM} table ${NAME}`);

  beforeAll(async () => {
    g = await Guest.boot(AGENT);
    const [a, b] = [await g.vm.sh(`cat /sys/class/block/${g.disk.slice(5)}/dev`), await g.vm.sh(`cat /sys/class/block/${g.other.slice(5)}/dev`)];
    // two segments, the first at an offset, as LVM lays out an LV over two PVs
    await g.vm.sh(`printf '0 ${SEG} linear ${a} 2048\\n${SEG} ${SEG} linear ${b} 0\\n' | ${DM} create ${NAME}`);
    original = await g.vm.sh(`${DM} table ${NAME}`);
    await g.vm.sh('mkdir -p /sys/fs/cgroup/ioftest');
    expect(original.split('\n')).toHaveLength(2);
    // a known pattern over the whole device, kept as the expected content
    await g.vm.sh(`head -c ${SEG * 2 * 512} /dev/urandom > /dev/shm/expect && dd if=/dev/shm/expect of=${LV} bs=1M oflag=direct status=none`);
  }, 900_000);

  afterAll(async () => {
    await g?.shutdown();
  }, 60_000);

  afterEach(async () => {
    // every test leaves the device as it found it (a failed one is cleaned up so the next starts clean)
    const t = await table();
    if (t !== original) await g.client.clearFilters().catch(() => undefined);
    expect(t).toBe(original);
  });

  test('Status: dm available with its targets; bpf not attached', async () => {
    const st = await g.client.status();
    const dm = st.backends.find((b) => b.backend === 'BACKEND_DM');
    // built in on the test kernels; a module on Debian's, loaded by the kernel with the first flakey table
    const flakey = KERNEL.startsWith('stock-') ? /^error, flakey \(loaded on first use\)/ : /^error, flakey [\d.]+ error_writes/;
    expect(dm).toMatchObject({ available: true, detail: expect.stringMatching(flakey) });
    expect(st.backends.find((b) => b.backend === 'BACKEND_BPF')).toMatchObject({ available: false, reason: expect.stringMatching(/not attached/) });
  });

  test('write filter (write,flush,discard,write-zeroes) across the segment boundary, I/O running elsewhere: EIO exactly there; table and data intact after delete', async () => {
    // a writer and reader elsewhere on the device for the whole test, rewriting the same bytes
    await g.vm.sh(
      `(for i in $(seq 400); do dd if=/dev/shm/expect of=${LV} bs=4096 count=8 skip=6000 seek=6000 oflag=direct conv=notrunc status=none || echo W$i; ` +
        `dd if=${LV} of=/dev/null bs=4096 count=8 skip=7000 iflag=direct status=none || echo R$i; [ -e /dev/shm/stop ] && break; done > /dev/shm/bg.out 2>&1; echo done >> /dev/shm/bg.out) >/dev/null 2>&1 &`,
    );
    const f = await g.client.setFilter({ device: LV, ranges: [{ start: 1000, end: 1999, ops: [...W] }, { start: SEG - 8, end: SEG + 7, ops: [...W] }], ttlMs: 600_000 });
    expect(f).toMatchObject({ backend: 'BACKEND_DM', dm: { name: NAME, originalTable: original + '\n' }, notCounted: expect.stringMatching(/^not counted/) });
    expect(await table()).toMatch(/^1000 1000 flakey \S+ 3048 0 1 1 error_writes\s*$/m);
    expect(await g.io(LV, 'write', 1000, 1)).toBe('EIO');
    expect(await g.io(LV, 'write', 1999, 1)).toBe('EIO');
    expect(await g.io(LV, 'write', SEG - 1, 2)).toBe('EIO'); // spans the boundary
    expect(await g.io(LV, 'write', 999, 1)).toBe('ok');
    expect(await g.io(LV, 'write', 2000, 1)).toBe('ok');
    expect(await g.io(LV, 'write', SEG + 8, 1)).toBe('ok');
    expect(await g.io(LV, 'read', 1000, 8)).toBe('ok');
    expect(await g.io(LV, 'read', SEG - 8, 16)).toBe('ok');
    expect(await g.fsync(LV)).toBe('EIO'); // flakey error_writes fails the device's flushes, as documented
    expect((await g.client.deleteFilter(LV)).existed).toBe(true);
    await g.vm.sh('touch /dev/shm/stop; for t in $(seq 600); do grep -q done /dev/shm/bg.out && break; sleep 0.1; done; rm /dev/shm/stop');
    expect(await g.vm.sh('cat /dev/shm/bg.out')).toBe('done'); // no background I/O failed, none was lost by the swaps
    expect(await g.io(LV, 'write', 1000, 1)).toBe('ok');
    expect(await g.fsync(LV)).toBe('ok');
    // the sentinel writes above wrote zeros at 999, 2000, SEG+8 and 1000: put them in the expectation
    for (const s of [999, 2000, SEG + 8, 1000]) await g.vm.sh(`dd if=/dev/zero of=/dev/shm/expect bs=512 count=1 seek=${s} conv=notrunc status=none`);
    expect(await g.vm.exec(`cmp ${LV} /dev/shm/expect`)).toMatchObject({ code: 0 });
  });

  test('read,write,discard,write-zeroes filter: an error segment; reads and writes fail there, flushes pass', async () => {
    await g.client.setFilter({ device: LV, ranges: [{ start: 40000, end: 40099, ops: [...RW] }], ttlMs: 600_000 });
    expect(await table()).toMatch(/^40000 100 error\s*$/m); // the kernel prints a trailing space
    expect(await g.io(LV, 'read', 40050, 1)).toBe('EIO');
    expect(await g.io(LV, 'write', 40099, 1)).toBe('EIO');
    expect(await g.io(LV, 'read', 39999, 1)).toBe('ok');
    expect(await g.io(LV, 'read', 40100, 1)).toBe('ok');
    expect(await g.fsync(LV)).toBe('ok');
    expect((await g.client.deleteFilter(LV)).existed).toBe(true);
    expect(await g.io(LV, 'read', 40050, 1)).toBe('ok');
    expect(await g.vm.exec(`cmp ${LV} /dev/shm/expect`)).toMatchObject({ code: 0 });
  });

  const [maj, min] = kernelVersion(SERIES);
  const reads = maj > 6 || (maj === 6 && min >= 4);
  test(reads ? 'read filter: reads fail, writes pass' : 'read filter: refused naming the kernel version, nothing changed', async () => {
    const req = { device: LV, ranges: [{ start: 100, end: 199, ops: ['OP_READ' as const] }], ttlMs: 600_000 };
    if (!reads) {
      expect(await refusalOf(g.client.setFilter(req))).toEqual({ code: grpc.status.FAILED_PRECONDITION, details: expect.stringMatching(new RegExp(`error_reads needs Linux 6\\.4 or later, this kernel is ${SERIES.replace('.', '\\.')}\\.`)) });
      return;
    }
    await g.client.setFilter(req);
    expect(await g.io(LV, 'read', 150, 1)).toBe('EIO');
    expect(await g.vm.sh(`dd if=/dev/shm/expect of=${LV} bs=512 count=1 skip=150 seek=150 oflag=direct conv=notrunc status=none && echo ok`)).toBe('ok');
    await g.client.deleteFilter(LV);
  });

  describe('refusals: a clear error, the table unchanged', () => {
    const cases: [string, object, RegExp][] = [
      ['probability', { ranges: [{ start: 0, end: 9, ops: [...RW] }], probability: 0.5 }, /probability 0.5: a dm error segment fails every I\/O/],
      ['cgroup scope', { ranges: [{ start: 0, end: 9, ops: [...RW] }], cgroupPath: '/ioftest' }, /cgroup scope: a dm table fails every I\/O/],
      ['max failures', { ranges: [{ start: 0, end: 9, ops: [...RW] }], maxFailures: 2 }, /max_failures/],
      ['write alone', { ranges: [{ start: 0, end: 9, ops: ['OP_WRITE'] }] }, /ops write: no device-mapper target fails exactly these/],
      ['flush alone', { wholeDeviceOps: ['OP_FLUSH'] }, /ops flush: no device-mapper target/],
    ];
    test.each(cases)('%s', async (_n, fields, why) => {
      const r = await refusalOf(g.client.setFilter({ device: LV, ttlMs: 60_000, backend: 'BACKEND_DM', ...fields }));
      expect(r).toEqual({ code: grpc.status.FAILED_PRECONDITION, details: expect.stringMatching(why) });
      expect((await g.client.status()).filters).toEqual([]);
    });

    test('a dm device that is active swap is protected, and so is every device below it; the disk beside it is not', async () => {
      const [p1, p2] = g.parts;
      const sectors = Number(await g.vm.sh(`blockdev --getsz ${p1.path}`));
      await g.vm.sh(`${DM} create iof-swap --table "0 ${sectors} linear ${p1.path} 0"`);
      const swap = '/dev/mapper/iof-swap';
      let on = false;
      try {
        await g.vm.sh(`mkswap -q ${swap} 2>/dev/null || mkswap ${swap} >/dev/null`);
        await g.vm.sh(`swapon ${swap}`); // after the agent started: protection reads the host as it is now
        on = true;
        const before = await g.vm.sh(`${DM} table iof-swap`);
        for (const req of [
          { device: swap, ranges: [{ start: 0, end: 7, ops: [...RW] }] }, // the swap device itself
          { device: p1.path, wholeDeviceOps: [...RW] }, // the partition below it
          { device: g.pdisk, ranges: [{ start: p1.start + 8, end: p1.start + 15, ops: [...RW] }] }, // its sectors through the disk
        ]) {
          const r = await refusalOf(g.client.setFilter({ ...req, ttlMs: 60_000 }));
          expect(r).toEqual({ code: grpc.status.FAILED_PRECONDITION, details: expect.stringMatching(/is protected: .*is active swap.*protect\.allow/) });
        }
        expect(await g.vm.sh(`${DM} table iof-swap`)).toBe(before);
        expect((await g.client.status()).filters).toEqual([]);
        // the other partition of the same disk is not under the swap: it passes the protection
        // check and meets the next one (bpf is not attached in this suite)
        const why = await refusalOf(g.client.setFilter({ device: p2.path, wholeDeviceOps: [...RW], ttlMs: 60_000, backend: 'BACKEND_BPF' }));
        expect(why.details).toMatch(/not attached/);
      } finally {
        if (on) await g.vm.sh(`swapoff ${swap}`);
        await g.vm.sh(`${DM} remove iof-swap`);
      }
    });

    // where the kernel has block error injection (the project's 7.2 builds, test or
    // distro-like), auto serves what dm cannot with it; elsewhere it refuses, saying what would work
    const BLKINJECT = BUILT_WITH_BLKINJECT;
    test(`a non-linear target (striped): ${BLKINJECT ? 'auto serves it with block error injection' : 'refused naming it and the devices below; auto says what would work'}`, async () => {
      // beyond the sectors the LV uses on both loop devices
      await g.vm.sh(`printf '0 2048 striped 2 8 ${g.disk} 100000 ${g.other} 100000\\n' | ${DM} create iof-str`);
      try {
        const before = await g.vm.sh(`${DM} table iof-str`);
        const req = { device: '/dev/mapper/iof-str', wholeDeviceOps: [...RW], ttlMs: 60_000 };
        if (BLKINJECT) {
          expect((await g.client.setFilter(req)).backend).toBe('BACKEND_BLKINJECT');
          expect(await g.io('/dev/mapper/iof-str', 'write', 0)).toBe('EIO');
          expect((await g.client.deleteFilter('/dev/mapper/iof-str')).existed).toBe(true);
        } else {
          const r = await refusalOf(g.client.setFilter(req));
          expect(r.code).toBe(grpc.status.FAILED_PRECONDITION);
          expect(r.details).toMatch(/no backend can do error EIO on dm-\d+ exactly as asked: bpf: not attached.*dm: dm device iof-str maps sectors 0-2047 with target "striped".*device below it \(\/dev\/loop\d+, \/dev\/loop\d+\) could be faulted instead.*What would work/);
        }
        expect(await g.vm.sh(`${DM} table iof-str`)).toBe(before);
      } finally {
        await g.vm.sh(`${DM} remove iof-str`);
      }
    });

    test(`a plain loop device under auto: ${BLKINJECT ? 'served by block error injection' : 'refused, naming wrap'}`, async () => {
      const req = { device: g.pdisk, wholeDeviceOps: [...RW], ttlMs: 60_000 };
      if (BLKINJECT) {
        expect((await g.client.setFilter(req)).backend).toBe('BACKEND_BLKINJECT');
        expect((await g.client.deleteFilter(g.pdisk)).existed).toBe(true);
      } else {
        const r = await refusalOf(g.client.setFilter(req));
        expect(r.details).toMatch(/not a device-mapper device.*iofilterctl wrap/);
      }
    });
  });

  test('TTL with the agent SIGKILLed: the watchdog restores the table at the deadline, by the guest clock', async () => {
    const ttl = 15_000;
    const t0 = await g.uptimeMs();
    await g.client.setFilter({ device: LV, ranges: [{ start: 1000, end: 1999, ops: [...W] }], ttlMs: ttl });
    const t1 = await g.uptimeMs();
    await g.killAgent('KILL');
    expect(await g.io(LV, 'write', 1500, 1)).toBe('EIO'); // still in force with the agent gone
    // wait in the guest until the table is the original again, then read the clock
    const end = Number(
      await g.vm.sh(`for t in $(seq 1200); do [ "$(${DM} table ${NAME})" = "${original}" ] && break; sleep 0.05; done; cut -d" " -f1 /proc/uptime`, 300_000),
    ) * 1000;
    expect(await table()).toBe(original);
    expect(end).toBeGreaterThanOrEqual(t0 + ttl);
    console.log(`dm TTL ${ttl} ms: restored ${Math.round(end - t1 - ttl)} ms after the latest deadline (set took ${t1 - t0} ms)`);
    expect(await g.vm.exec(`pgrep -f '[d]ist/agent/main.js'`)).toMatchObject({ code: 1 });
    expect(await g.io(LV, 'write', 1500, 1)).toBe('ok');
    // the watchdog leaves once nothing is left to watch
    expect(await g.vm.exec(`for t in $(seq 300); do pgrep -f '[w]atchdog.js' >/dev/null || exit 0; sleep 0.1; done; exit 1`)).toMatchObject({ code: 0 });
    await g.vm.sh(`dd if=/dev/zero of=/dev/shm/expect bs=512 count=1 seek=1500 conv=notrunc status=none`);
    await g.startAgent(AGENT);
  }, 900_000);

  test('agent and watchdog both killed: the next agent restores the expired fault before it serves', async () => {
    const ttl = 4000;
    await g.client.setFilter({ device: LV, ranges: [{ start: 1000, end: 1999, ops: [...W] }], ttlMs: ttl });
    const t1 = await g.uptimeMs();
    await g.killAgent('KILL');
    await g.vm.sh(`pkill -KILL -f '[w]atchdog.js --state-dir ${STATE}'; for t in $(seq 100); do pgrep -f '[w]atchdog.js' >/dev/null || exit 0; sleep 0.1; done; exit 1`);
    // past the deadline with nothing running: the table is still faulted
    await g.vm.sh(`while [ $(cut -d. -f1 /proc/uptime) -le $(( (${t1} + ${ttl}) / 1000 + 1 )) ]; do sleep 0.2; done`, 120_000);
    expect(await table()).not.toBe(original);
    await g.startAgent(AGENT); // returns once the agent answers Status
    expect(await table()).toBe(original);
    expect((await g.client.status()).filters).toEqual([]);
  }, 900_000);

  test('wrap: a raw loop device becomes /dev/mapper/iofilter-NAME; faulted by auto; unwrap refused while faulted, then removes it', async () => {
    const w = await g.client.wrap(g.parts[1].path, 'p2');
    expect(w.wrapped).toMatchObject({ name: 'p2', path: '/dev/mapper/iofilter-p2', below: g.parts[1].path });
    expect(await g.vm.sh(`${DM} table iofilter-p2`)).toMatch(/^0 32768 linear \d+:\d+ 0$/);
    expect((await g.client.status()).wrapped.map((x) => x.name)).toEqual(['p2']);
    await g.client.setFilter({ device: '/dev/mapper/iofilter-p2', ranges: [{ start: 8, end: 15, ops: [...RW] }], ttlMs: 60_000 });
    expect(await g.io('/dev/mapper/iofilter-p2', 'write', 8, 1)).toBe('EIO');
    expect((await refusalOf(g.client.unwrap('p2'))).details).toMatch(/has a filter in force: delete it first/);
    await g.client.deleteFilter('/dev/mapper/iofilter-p2');
    expect((await refusalOf(g.client.wrap(g.parts[1].path, 'again'))).details).toMatch(/is held by dm-\d+/);
    expect(await g.client.unwrap('p2')).toEqual({ existed: true });
    expect(await g.vm.exec(`${DM} info iofilter-p2`)).toMatchObject({ code: 1 });
    expect((await g.client.status()).wrapped).toEqual([]);
  }, 900_000);

  test('ext4 on a wrapped device under a write filter: the filesystem reports EIO; after delete, fsck is clean and synced files read back unchanged', async () => {
    const dev = '/dev/mapper/iofilter-fs';
    await g.client.wrap(g.parts[0].path, 'fs');
    try {
      await g.vm.sh(`mkfs.ext4 -q -F ${dev} && mkdir -p /mnt/ioffs && mount ${dev} /mnt/ioffs`);
      await g.vm.sh('head -c 262144 /dev/urandom > /mnt/ioffs/keep && sync && md5sum /mnt/ioffs/keep > /dev/shm/keep.md5');
      await g.client.setFilter({ device: dev, wholeDeviceOps: [...W], ttlMs: 600_000 });
      const w = await g.vm.exec('dd if=/dev/urandom of=/mnt/ioffs/new bs=64k count=4 conv=fsync status=none');
      expect(w.code).not.toBe(0);
      // EIO, or EROFS once ext4 has already aborted on the failed journal commit (errors=remount-ro)
      expect(w.stderr).toMatch(/Input\/output error|Read-only file system/);
      expect((await g.client.deleteFilter(dev)).existed).toBe(true);
      // remount (replays the journal), the synced file reads back unchanged, then fsck
      await g.vm.sh('umount /mnt/ioffs');
      await g.vm.sh(`mount ${dev} /mnt/ioffs && md5sum -c /dev/shm/keep.md5 && umount /mnt/ioffs`);
      const fsck = await g.vm.exec(`fsck.ext4 -f -n ${dev}`);
      console.log(`ext4 after a write fault: fsck exit ${fsck.code}\n${fsck.stdout}${fsck.stderr}`);
      expect(fsck.code).toBe(0);
      expect(fsck.stdout + fsck.stderr).not.toMatch(/Fix\?|skipping journal recovery/);
    } finally {
      await g.vm.exec('umount /mnt/ioffs 2>/dev/null');
      await g.client.clearFilters();
      await g.client.unwrap('fs');
    }
  }, 900_000);
});
