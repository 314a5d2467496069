// Fault kinds beyond EIO on the dm backend, in the VM (IOFILTER_KERNEL: the 6.1 test
// kernel and Debian's stock kernels, where dm-mod, dm-delay and dm-flakey are modules
// loaded on demand): an LVM LV over two loop devices (two linear segments, as LVM lays
// out an extended LV), then
// - delay: fio latency inside the range at least the delay and within a bound above it,
//   outside the range unchanged, both against a baseline measured in the same run;
// - drop-writes: a direct write that succeeds and a direct read after it that returns
//   the old data, only inside the range;
// - corrupt: a read that differs from what was written exactly at the byte and with the
//   value the filter names (reads on every kernel; writes from 6.5, refused before);
// - ext4 with metadata_csum reporting an inode whose reads are corrupted;
// - SQLite on ext4 under a write delay (slower by at least the delays it waits for, and
//   intact) and under drop-writes on its file (a committed update gone at the next read).
// Every test ends with the LV's table byte-identical to the original.
import * as grpc from '@grpc/grpc-js';
import { kernelVersion } from '../../agent/backends/dm/table';
import { Guest, KERNEL, SERIES } from '../helpers/guest';
import { grpcRefusalOf as refusalOf } from '../helpers/refusal';
import { describeIf } from '../helpers/tier';
import { vmUnavailableReason } from '../helpers/vm';

const d = describeIf(vmUnavailableReason());
jest.setTimeout(900_000); // TCG on a loaded machine

const STATE = '/dev/shm/iofilter-state';
const AGENT = ['--attach', 'none', '--state-dir', STATE];
const DM = 'DM_DISABLE_UDEV=1 dmsetup --noudevsync';
// no udev in the guest: LVM makes its own nodes, and scans devices itself
const lvm = (cmd: string) => `${cmd.split(' ')[0]} --config 'devices { obtain_device_list_from_udev = 0 use_devicesfile = 0 } activation { udev_sync = 0 udev_rules = 0 }' ${cmd.split(' ').slice(1).join(' ')}`;
const LV = '/dev/mapper/iofvg-data';
const NAME = 'iofvg-data';
const [maj, min] = kernelVersion(SERIES);
const since65 = maj > 6 || (maj === 6 && min >= 5);
const notRegistered = (): void => undefined;

d(`VM fault kinds on the dm backend, Linux ${KERNEL}`, () => {
  let g: Guest;
  let original = '';
  const table = () => g.vm.sh(`${DM} table ${NAME}`);

  beforeAll(async () => {
    g = await Guest.boot(AGENT);
    // stock kernels: ext4 is a module that mount(8) does not load here (built in on the test kernels)
    await g.vm.exec('modprobe ext4');
    // the comparisons below use bash's <(...): the guest's fresh devtmpfs has no /dev/fd
    await g.vm.sh('[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd');
    await g.vm.sh('mkdir -p /run/lvm /run/lock/lvm');
    await g.vm.sh(`${lvm(`pvcreate -ff -y ${g.disk} ${g.other}`)} && ${lvm(`vgcreate -y iofvg ${g.disk} ${g.other}`)}`, 120_000);
    // 12 MiB on the first PV, a 4 MiB LV after it, then 12 MiB more on the second: two segments
    await g.vm.sh(
      [`lvcreate -y -Wn -Zn -n data -L 12M iofvg ${g.disk}`, `lvcreate -y -Wn -Zn -n pad -L 4M iofvg ${g.disk}`, `lvextend -y -L 24M iofvg/data ${g.other}`].map(lvm).join(' && '),
      120_000,
    );
    original = await table();
    expect(original.split('\n').map((l) => l.split(' ')[2])).toEqual(['linear', 'linear']);
    await g.vm.sh(`head -c ${24 * 1024 * 1024} /dev/urandom > /dev/shm/expect && dd if=/dev/shm/expect of=${LV} bs=1M oflag=direct status=none`);
  }, 900_000);

  afterAll(async () => {
    await g?.client.clearFilters().catch(() => undefined);
    await g?.vm.exec(lvm('vgremove -ff -y iofvg')).catch(() => undefined);
    await g?.shutdown();
  }, 120_000);

  afterEach(async () => {
    const t = await table();
    if (t !== original) await g.client.clearFilters().catch(() => undefined);
    expect(t).toBe(original);
  });

  /** p50 completion latency in ms of `ios` direct 4 KiB I/Os of fio at `sector` (1 MiB region). */
  async function p50(rw: 'randread' | 'randwrite', sector: number, ios: number): Promise<number> {
    const out = await g.vm.sh(
      `fio --name=lat --filename=${LV} --direct=1 --ioengine=psync --rw=${rw} --bs=4k --offset=${sector * 512} --size=1M --number_ios=${ios} --randrepeat=1 --output-format=json 2>/dev/null`,
      300_000,
    );
    const j = JSON.parse(out.slice(out.indexOf('{'))) as { jobs: { read: Lat; write: Lat }[] };
    const part = rw === 'randread' ? j.jobs[0].read : j.jobs[0].write;
    expect(part.total_ios).toBe(ios);
    return part.clat_ns.percentile['50.000000'] / 1e6;
  }
  interface Lat {
    total_ios: number;
    clat_ns: { percentile: Record<string, number> };
  }

  test('delay: p50 inside the range is the delay plus at most the slack; outside it is what it was', async () => {
    const IN = 2048; // sectors 2048-4095 of the first segment
    const OUT = 30000; // in the second segment
    const DELAY = 200;
    const base = { in: await p50('randread', IN, 8), out: await p50('randread', OUT, 8) };
    const f = await g.client.setFilter({ device: LV, ranges: [{ start: IN, end: IN + 2047 }], fault: { delay: { readMs: DELAY, writeMs: DELAY, flushMs: 0 } }, ttlMs: 600_000 });
    expect(f).toMatchObject({ backend: 'BACKEND_DM', fault: { delay: { readMs: DELAY, writeMs: DELAY, flushMs: 0 } } });
    expect(await table()).toMatch(new RegExp(`^2048 2048 delay (\\d+:\\d+) (\\d+) ${DELAY} \\1 \\2 ${DELAY} \\1 \\2 0\\s*$`, 'm'));
    const during = { in: await p50('randread', IN, 8), out: await p50('randread', OUT, 8), write: await p50('randwrite', IN, 4) };
    console.log(`delay ${DELAY} ms on ${KERNEL}: p50 read inside ${during.in.toFixed(1)} ms (baseline ${base.in.toFixed(1)}), outside ${during.out.toFixed(1)} ms (baseline ${base.out.toFixed(1)}); write inside ${during.write.toFixed(1)} ms`);
    // the bound: the delay, plus what the same read took without it, plus dm-delay's timer and workqueue (50 ms)
    const slack = (b: number) => DELAY + 3 * b + 50;
    expect(during.in).toBeGreaterThanOrEqual(DELAY);
    expect(during.in).toBeLessThanOrEqual(slack(base.in));
    expect(during.write).toBeGreaterThanOrEqual(DELAY);
    expect(during.out).toBeLessThan(DELAY / 2);
    expect(during.out).toBeLessThanOrEqual(3 * base.out + 20);
    expect((await g.client.deleteFilter(LV)).existed).toBe(true);
    // the writes above wrote fio's buffers: the expectation follows the device from here
    await g.vm.sh(`dd if=${LV} of=/dev/shm/expect bs=1M iflag=direct status=none`);
  });

  test('drop-writes: a direct write inside the range succeeds and a read after it returns the old data; outside it lands', async () => {
    await g.vm.sh('head -c 8192 /dev/urandom > /dev/shm/new');
    const wr = (sector: number) => g.vm.exec(`dd if=/dev/shm/new of=${LV} bs=8192 count=1 seek=${sector * 512} oflag=direct,seek_bytes conv=notrunc,fsync status=none`);
    const same = async (sector: number, file: string, skip = 0) =>
      (await g.vm.exec(`cmp -n 8192 <(dd if=${LV} bs=8192 count=1 skip=${sector * 512} iflag=direct,skip_bytes status=none) <(dd if=${file} bs=8192 count=1 skip=${skip} iflag=skip_bytes status=none)`)).code === 0;
    expect(await same(4096, '/dev/shm/expect', 4096 * 512)).toBe(true); // the device holds what we think
    expect(await same(4096, '/dev/shm/new')).toBe(false);
    await g.client.setFilter({ device: LV, ranges: [{ start: 4096, end: 4111 }], fault: { dropWrites: {} }, ttlMs: 600_000 });
    expect(await table()).toMatch(/^4096 16 flakey \S+ \d+ 0 1 1 drop_writes\s*$/m);
    expect(await wr(4096)).toMatchObject({ code: 0 }); // acknowledged, fsync included
    expect(await wr(30000)).toMatchObject({ code: 0 });
    expect(await same(4096, '/dev/shm/expect', 4096 * 512)).toBe(true); // the old data: the write was lost
    expect(await same(4096, '/dev/shm/new')).toBe(false);
    expect(await same(30000, '/dev/shm/new')).toBe(true); // outside the range it landed
    expect((await g.client.deleteFilter(LV)).existed).toBe(true);
    expect(await wr(4096)).toMatchObject({ code: 0 });
    expect(await same(4096, '/dev/shm/new')).toBe(true);
    await g.vm.sh(`for s in 4096 30000; do dd if=/dev/shm/new of=/dev/shm/expect bs=8192 count=1 seek=$((s*512)) oflag=seek_bytes conv=notrunc status=none; done`);
    expect(await g.vm.exec(`cmp ${LV} /dev/shm/expect`)).toMatchObject({ code: 0 });
  });

  /** `cmp -l` of 4 KiB of the LV at `sector` against the expectation: "byte old new" (octal) per difference. */
  const diff = (sector: number) => g.vm.exec(`cmp -l <(dd if=${LV} bs=4096 count=1 skip=${sector * 512} iflag=direct,skip_bytes status=none) <(dd if=/dev/shm/expect bs=4096 count=1 skip=${sector * 512} iflag=skip_bytes status=none)`);

  test(since65 ? 'corrupt reads: byte 1 of each read inside the range reads 0x55, nothing else differs, the disk keeps the data' : 'corrupt reads: refused before 6.5, naming why, nothing changed', async () => {
    const S = 8192;
    if (!since65) {
      const req = { device: LV, ranges: [{ start: S, end: S + 7 }], fault: { corrupt: { direction: 'CORRUPT_DIRECTION_READ' as const, byte: 1, value: 0x55 } }, ttlMs: 600_000 };
      expect(await refusalOf(g.client.setFilter(req))).toEqual({ code: grpc.status.FAILED_PRECONDITION, details: expect.stringMatching(/corrupt reads: before Linux 6\.5 dm-flakey corrupts a read at completion/) });
      return;
    }
    await g.vm.sh(`printf '\\000' | dd of=/dev/shm/expect bs=1 seek=${S * 512} conv=notrunc status=none && dd if=/dev/shm/expect of=${LV} bs=4096 count=1 skip=${S / 8} seek=${S / 8} oflag=direct conv=notrunc status=none`);
    await g.client.setFilter({ device: LV, ranges: [{ start: S, end: S + 7 }], fault: { corrupt: { direction: 'CORRUPT_DIRECTION_READ', byte: 1, value: 0x55 } }, ttlMs: 600_000 });
    expect(await table()).toMatch(new RegExp(`^${S} 8 flakey \\S+ \\d+ 0 1 5 corrupt_bio_byte 1 r 85 0\\s*$`, 'm'));
    const r = await diff(S);
    expect(r.stdout.trim().split(/\s+/).join(' ')).toBe('1 125 0'); // byte 1: read 0x55 (octal 125), written 0x00
    expect((await diff(S + 8)).code).toBe(0); // the next 4 KiB is outside the range
    expect((await g.client.deleteFilter(LV)).existed).toBe(true);
    expect((await diff(S)).code).toBe(0);
  });

  test(since65 ? 'corrupt writes: byte 5 of the write lands as 0xaa' : 'corrupt writes: refused before 6.5, naming why, nothing changed', async () => {
    const S = 12288;
    const req = { device: LV, ranges: [{ start: S, end: S + 7 }], fault: { corrupt: { direction: 'CORRUPT_DIRECTION_WRITE' as const, byte: 5, value: 0xaa } }, ttlMs: 600_000 };
    if (!since65) {
      expect(await refusalOf(g.client.setFilter(req))).toEqual({ code: grpc.status.FAILED_PRECONDITION, details: expect.stringMatching(/corrupt writes: before Linux 6\.5 dm-flakey changes the writer's own buffer/) });
      return;
    }
    await g.vm.sh(`printf '\\000' | dd of=/dev/shm/expect bs=1 seek=${S * 512 + 4} conv=notrunc status=none`);
    await g.client.setFilter(req);
    await g.vm.sh(`dd if=/dev/shm/expect of=${LV} bs=4096 count=1 skip=${S / 8} seek=${S / 8} oflag=direct conv=notrunc status=none`);
    expect((await g.client.deleteFilter(LV)).existed).toBe(true);
    expect((await diff(S)).stdout.trim().split(/\s+/).join(' ')).toBe('5 252 0'); // stored 0xaa (octal 252) where 0x00 was written
    await g.vm.sh(`printf '\\252' | dd of=/dev/shm/expect bs=1 seek=${S * 512 + 4} conv=notrunc status=none`);
  });

  test('refusals for kinds: an error status device-mapper cannot return, a probability, a cgroup, ops that do not match the kind', async () => {
    const cases: [object, RegExp][] = [
      [{ fault: { error: { status: 'ERROR_STATUS_NOSPC' } }, wholeDeviceOps: ['OP_WRITE'] }, /error status ENOSPC: device-mapper's targets fail with EIO only/],
      [{ fault: { delay: { readMs: 5 } }, probability: 0.5 }, /probability 0.5/],
      [{ fault: { dropWrites: {} }, ranges: [{ start: 0, end: 7, ops: ['OP_READ'] }] }, /ranges\[0\]\.ops: read: a drop writes .* fault acts on write,flush,discard,write_zeroes/],
    ];
    for (const [fields, why] of cases) {
      const r = await refusalOf(g.client.setFilter({ device: LV, ttlMs: 60_000, backend: 'BACKEND_DM', ...fields }));
      expect(r.details).toMatch(why);
      expect((await g.client.status()).filters).toEqual([]);
    }
  });

  // corrupting reads needs 6.5 (above): before, there is nothing for the file system to catch, and no test
  (since65 ? test : notRegistered)('ext4 with metadata_csum: reads of one inode corrupted, the filesystem reports the bad checksum; after delete fsck is clean', async () => {
    const dev = '/dev/mapper/iofilter-csum';
    await g.client.wrap(g.parts[0].path, 'csum');
    try {
      await g.vm.sh(`mkfs.ext4 -q -F -O metadata_csum ${dev} && mkdir -p /mnt/csum && mount ${dev} /mnt/csum && echo hello > /mnt/csum/file && umount /mnt/csum`);
      const imap = await g.vm.sh(`debugfs -R 'imap /file' ${dev} 2>/dev/null`);
      const m = /located at block (\d+), offset 0x([0-9a-f]+)/.exec(imap);
      expect(m).not.toBeNull();
      const bs = Number(await g.vm.sh(`dumpe2fs -h ${dev} 2>/dev/null | sed -n 's/^Block size: *//p'`));
      const [block, off] = [Number(m![1]), parseInt(m![2], 16)];
      const start = (block * bs) / 512;
      // the inode's first byte (i_mode), on every read of its block: dm splits a read at the
      // range's edges, so byte numbers count from the range's first sector
      await g.client.setFilter({ device: dev, ranges: [{ start, end: start + bs / 512 - 1 }], fault: { corrupt: { direction: 'CORRUPT_DIRECTION_READ', byte: off + 1, value: 0 } }, ttlMs: 600_000 });
      await g.vm.sh('dmesg -c >/dev/null');
      await g.vm.sh(`mount ${dev} /mnt/csum`);
      const cat = await g.vm.exec('cat /mnt/csum/file');
      expect(cat.code).not.toBe(0);
      expect(cat.stderr).toMatch(/Bad message/); // EFSBADCRC
      expect(await g.vm.sh('dmesg')).toMatch(/checksum invalid/);
      await g.vm.sh('umount /mnt/csum');
      await g.client.deleteFilter(dev);
      expect(await g.vm.exec(`fsck.ext4 -f -n ${dev}`)).toMatchObject({ code: 0 });
      expect(await g.vm.sh(`mount ${dev} /mnt/csum && cat /mnt/csum/file && umount /mnt/csum`)).toBe('hello');
    } finally {
      await g.vm.exec('umount /mnt/csum 2>/dev/null');
      await g.client.clearFilters();
      await g.client.unwrap('csum');
    }
  });

  test('SQLite on ext4: under a 50 ms write and flush delay it keeps working, slower by at least the delays; under drop-writes on its file a committed update is gone at the next read', async () => {
    const dev = '/dev/mapper/iofilter-db';
    const N = 10;
    await g.client.wrap(g.parts[1].path, 'db');
    try {
      await g.vm.sh(`mkfs.ext4 -q -F ${dev} && mkdir -p /mnt/db && mount ${dev} /mnt/db && sqlite3 /mnt/db/t.db 'create table t(k integer primary key, v text)'`);
      const commits = async (tag: string) => {
        const ms = await g.vm.sh(`t0=$(date +%s%N); for i in $(seq ${N}); do sqlite3 /mnt/db/t.db "insert into t(v) values('${tag}$i')" || exit 1; done; echo $(( ($(date +%s%N) - t0) / 1000000 ))`, 600_000);
        return Number(ms);
      };
      const base = await commits('a');
      await g.client.setFilter({ device: dev, fault: { delay: { readMs: 0, writeMs: 50, flushMs: 50 } }, ttlMs: 600_000 });
      const slow = await commits('b');
      await g.client.deleteFilter(dev);
      console.log(`SQLite on ${KERNEL}: ${N} commits took ${base} ms, ${slow} ms under a 50 ms write and flush delay (+${((slow - base) / N).toFixed(0)} ms per commit)`);
      // each commit waits for at least one delayed write and one delayed flush (the journal's fsync)
      expect(slow - base).toBeGreaterThanOrEqual(N * 100);
      expect(await g.vm.sh(`sqlite3 /mnt/db/t.db 'pragma integrity_check; select count(*) from t'`)).toBe(`ok\n${2 * N}`);

      // lost writes on the database file's own blocks (set --file): the journal is elsewhere and real
      await g.vm.sh('sync');
      const f = await g.client.setFilter({ file: '/mnt/db/t.db', fault: { dropWrites: {} }, ttlMs: 600_000 });
      expect(f).toMatchObject({ backend: 'BACKEND_DM', fault: { dropWrites: {} } });
      expect(await g.vm.exec(`sqlite3 /mnt/db/t.db "update t set v='changed' where k=1"`)).toMatchObject({ code: 0 });
      expect(await g.vm.sh(`sqlite3 /mnt/db/t.db 'select v from t where k=1'`)).toBe('changed'); // from the page cache
      await g.vm.sh('sync && echo 3 > /proc/sys/vm/drop_caches');
      expect(await g.vm.sh(`sqlite3 /mnt/db/t.db 'select v from t where k=1'`)).toBe('a1'); // the committed update is gone
      await g.client.deleteFilter(dev);
      await g.vm.sh('umount /mnt/db');
      expect(await g.vm.exec(`fsck.ext4 -f -n ${dev}`)).toMatchObject({ code: 0 });
    } finally {
      await g.vm.exec('umount /mnt/db 2>/dev/null');
      await g.client.clearFilters();
      await g.client.unwrap('db');
    }
  });

  test('the kernel stayed healthy', async () => {
    expect(await g.oopses()).toBe('');
  });
});
