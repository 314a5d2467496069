// Debian's stock kernels, unmodified (IOFILTER_KERNEL=stock-bookworm|stock-trixie|stock-sid,
// tests/vm/fetch-stock-kernel): the kernel's own facts measured in the guest (symbols,
// BTF, config), what Status says it offers and the true reason it offers no enforcing
// mode, what `auto` does there, observe attached with its self-test passed and counting
// exactly on ranges and on partitions both ways, and device-mapper over a loop device
// (modules loaded from the package's tree). Cases are recorded in the kernel matrix.
import * as grpc from '@grpc/grpc-js';
import { Guest, KERNEL } from '../helpers/guest';
import { matrixCase, matrixRefused, setRelease, writeMatrix } from '../helpers/matrix';
import { describeIf } from '../helpers/tier';
import { vmUnavailableReason } from '../helpers/vm';

interface StockKernel {
  release: RegExp;
  /** should_fail_bio and its clones in /proc/kallsyms */
  symbols: string[];
  /** lines of `bpftool btf dump` of vmlinux that name should_fail_bio */
  btf: number;
  /** CONFIG_BLK_ERROR_INJECTION: 'n' in 7.x, absent (no such option) before */
  blkErrorInjection: 'n' | 'absent';
  /** where the package puts its config (the agent reads it there) */
  configAt: 'boot' | 'modules';
  /** why fmod_ret and kprobe are unavailable: the cause, as the kernel has it */
  reasons: { fmod_ret: RegExp; kprobe: RegExp };
}

const NO_EI = /kernel built without CONFIG_FUNCTION_ERROR_INJECTION/;
const NOT_IN_KERNEL = /should_fail_bio is not in this kernel/;
/** Measured on the packages fetched on 2026-12-04 (README "Stock kernels"). */
const STOCK: Record<string, StockKernel> = {
  'stock-bookworm': {
    release: /^6\.1\.0-\d+-amd64$/,
    symbols: ['should_fail_bio.constprop.0'], // a clone submit_bio_noacct calls; no error injection to hook it
    btf: 0,
    configAt: 'boot',
    blkErrorInjection: 'absent',
    // what it was built without, then what it has instead of should_fail_bio
    reasons: {
      fmod_ret: /fmod_ret\/should_fail_bio: kernel built without CONFIG_FUNCTION_ERROR_INJECTION.*; besides, .*only the compiler clone should_fail_bio\.constprop\.0/,
      kprobe: /kernel built without CONFIG_(BPF_KPROBE_OVERRIDE|FUNCTION_ERROR_INJECTION).*; besides, .*only the compiler clone should_fail_bio\.constprop\.0/,
    },
  },
  'stock-trixie': {
    release: /^6\.12\.\d+\+deb13-amd64$/,
    symbols: [], // gcc-14 folded it away
    btf: 0,
    configAt: 'boot',
    blkErrorInjection: 'absent',
    reasons: {
      fmod_ret: /kernel built without CONFIG_FUNCTION_ERROR_INJECTION.*; besides, should_fail_bio is not in this kernel's symbols/,
      kprobe: /kernel built without CONFIG_(BPF_KPROBE_OVERRIDE|FUNCTION_ERROR_INJECTION).*; besides, should_fail_bio is not in this kernel's symbols/,
    },
  },
  'stock-sid': {
    release: /^7\.\d+\.\d+\+deb14-amd64$/,
    symbols: ['should_fail_bio'],
    btf: 1, // FUNC 'should_fail_bio' linkage=static: present, yet submit_bio_noacct does not call it
    configAt: 'modules',
    blkErrorInjection: 'n',
    reasons: { fmod_ret: NO_EI, kprobe: /CONFIG_(BPF_KPROBE_OVERRIDE|FUNCTION_ERROR_INJECTION)/ },
  },
};
const K = STOCK[KERNEL];
const d = describeIf(K ? vmUnavailableReason() : `IOFILTER_KERNEL=${KERNEL} is not a stock kernel (${Object.keys(STOCK).join(', ')})`);

d(`VM stock kernel ${KERNEL}: observe only, with the true reasons`, () => {
  let g: Guest;
  let release = '';

  beforeAll(async () => {
    g = await Guest.boot();
    const st = await g.client.status();
    release = st.kernelRelease;
    setRelease(release);
  }, 600_000);

  afterAll(async () => {
    writeMatrix(KERNEL, 'stock');
    await g?.shutdown();
  }, 60_000);

  test("the kernel is Debian's, with the facts measured for it", async () => {
    expect(release).toMatch(K.release);
    expect(await g.vm.sh('uname -r')).toBe(release);
    expect(await g.hookSymbols()).toEqual(K.symbols);
    expect(await g.hookBtfLines()).toBe(K.btf);
    const config = K.configAt === 'boot' ? `/boot/config-${release}` : `/lib/modules/${release}/config`;
    const text = await g.vm.sh(`cat ${config}`);
    // y, m, n ("is not set") or absent (its dependencies are off, so Kconfig never asked)
    const value = (opt: string) =>
      new RegExp(`^CONFIG_${opt}=(.*)$`, 'm').exec(text)?.[1] ?? (new RegExp(`^# CONFIG_${opt} is not set$`, 'm').test(text) ? 'n' : 'absent');
    const opts = ['FUNCTION_ERROR_INJECTION', 'BPF_KPROBE_OVERRIDE', 'FAIL_MAKE_REQUEST', 'BLK_ERROR_INJECTION', 'DEBUG_INFO_BTF', 'DM_FLAKEY', 'DM_DELAY', 'DM_DUST', 'BLK_DEV_THROTTLING'];
    expect(Object.fromEntries(opts.map((o) => [o, value(o)]))).toEqual({
      FUNCTION_ERROR_INJECTION: 'n',
      BPF_KPROBE_OVERRIDE: 'absent',
      FAIL_MAKE_REQUEST: 'absent',
      BLK_ERROR_INJECTION: K.blkErrorInjection,
      DEBUG_INFO_BTF: 'y',
      DM_FLAKEY: 'm',
      DM_DELAY: 'm',
      DM_DUST: 'n',
      BLK_DEV_THROTTLING: 'y',
    });
  });

  test('status: no enforcing mode, each with the reason this kernel has; observe available', async () => {
    const st = await g.client.status();
    expect(st.btf).toBe(true);
    const caps = Object.fromEntries(st.capabilities.map((c) => [c.mode, c]));
    expect({ fmod_ret: caps.MODE_FMOD_RET.available, kprobe: caps.MODE_KPROBE.available, observe: caps.MODE_OBSERVE.available }).toEqual({
      fmod_ret: false,
      kprobe: false,
      observe: true,
    });
    expect(caps.MODE_FMOD_RET.reason).toMatch(K.reasons.fmod_ret);
    expect(caps.MODE_KPROBE.reason).toMatch(K.reasons.kprobe);
    // "not in this kernel" exactly where it is not: a kernel with the function (or a clone) is not told so
    const absent = K.symbols.length === 0;
    expect([caps.MODE_FMOD_RET, caps.MODE_KPROBE].map((c) => NOT_IN_KERNEL.test(c.reason))).toEqual([absent, absent]);
    matrixRefused(KERNEL, 'fmod_ret', 'all cases', caps.MODE_FMOD_RET.reason);
    matrixRefused(KERNEL, 'kprobe', 'all cases', caps.MODE_KPROBE.reason);
  });

  test('auto: refused with every reason and a pointer to observe; nothing attached', async () => {
    await g.client.detach();
    const err = await g.client.attach('auto').then(
      () => null,
      (e: { code: number; details: string }) => e,
    );
    expect({ code: err && grpc.status[err.code], details: err?.details }).toEqual({
      code: 'FAILED_PRECONDITION',
      details: expect.stringMatching(/no enforcing mode works on this kernel .*`observe` mode counts what would fail/),
    });
    expect(err!.details).toMatch(K.reasons.fmod_ret);
    expect((await g.client.status()).state?.attached).toBe(false);
  });

  test('observe attaches and its self-test passes', matrixCase(KERNEL, 'observe', 'attach + self-test', async () => {
    await g.attach('observe');
    const st = await g.client.status();
    expect(st.state).toMatchObject({ attached: true, mode: 'MODE_OBSERVE', hook: 'tp_btf/block_bio_queue', pinned: true });
    expect(st.state?.selfTest).toMatchObject({ passed: true, detail: expect.stringMatching(/counted 1 matched, 1 would fail/) });
  }));

  test('observe: ranges counted exactly (inside, either edge, spanning), nothing fails', matrixCase(KERNEL, 'observe', 'ranges counted', async () => {
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
    expect(Object.values(seen)).toEqual(Array(8).fill('ok'));
    expect((await g.filterOf(g.disk))?.ranges.map((r) => [r.matched, r.failed])).toEqual([['4', '4']]);
    await g.client.deleteFilter(g.disk);
  }));

  test('observe: a partition filter counts I/O sent through the whole disk onto its sectors, not the other partition', matrixCase(KERNEL, 'observe', 'partition -> disk', async () => {
    const [p1, p2] = g.parts;
    await g.client.setFilter({ device: p1.path, ranges: [{ start: 100, end: 199, ops: ['OP_WRITE'] }] });
    const seen = [
      await g.io(p1.path, 'write', 150), // counted
      await g.io(g.pdisk, 'write', p1.start + 150), // counted
      await g.io(g.pdisk, 'write', p1.start + 200), // outside
      await g.io(p2.path, 'write', 150), // other partition
    ];
    expect(seen).toEqual(['ok', 'ok', 'ok', 'ok']);
    expect((await g.filterOf(p1.path))?.ranges.map((r) => [r.matched, r.failed])).toEqual([['2', '2']]);
    await g.client.deleteFilter(p1.path);
  }));

  test('observe: a whole-disk filter counts I/O sent through a partition onto its sectors', matrixCase(KERNEL, 'observe', 'disk -> partition', async () => {
    const p2 = g.parts[1];
    await g.client.setFilter({ device: g.pdisk, ranges: [{ start: p2.start + 64, end: p2.start + 71, ops: ['OP_READ'] }] });
    const seen = [await g.io(p2.path, 'read', 60), await g.io(p2.path, 'read', 72), await g.io(g.pdisk, 'read', p2.start + 64)];
    expect(seen).toEqual(['ok', 'ok', 'ok']);
    expect((await g.filterOf(g.pdisk))?.ranges.map((r) => [r.matched, r.failed])).toEqual([['2', '2']]);
    await g.client.deleteFilter(g.pdisk);
  }));

  test("device-mapper from the package's modules: a linear table over a loop device takes I/O", async () => {
    // dm-mod is a module here: modprobe finds it in the tree the kit binds at /lib/modules
    await g.vm.sh('modprobe dm-mod && grep -qw device-mapper /proc/devices');
    const img = '/dev/shm/dm-lin.img';
    const loop = await g.vm.sh(`truncate -s 16M ${img} && losetup -f --show ${img}`);
    try {
      // without udev dmsetup makes no /dev/mapper node: use the kernel's /dev/dm-N
      await g.vm.sh(`dmsetup create iof-stock-lin --table "0 32768 linear ${loop} 0"`);
      const dm = `/dev/dm-${await g.vm.sh('dmsetup info -c --noheadings -o minor iof-stock-lin')}`;
      expect(await g.vm.sh('dmsetup table iof-stock-lin')).toBe(`0 32768 linear ${await g.vm.sh(`cat /sys/class/block/${loop.slice(5)}/dev`)} 0`);
      // a pattern written through dm-linear lands on the loop device at the same offset
      await g.vm.sh(`printf 'iofilter-dm-%s' sentinel | dd of=${dm} bs=4096 seek=3 conv=sync,notrunc oflag=direct status=none`);
      expect(await g.vm.sh(`dd if=${loop} bs=4096 skip=3 count=1 iflag=direct status=none | head -c 20`)).toBe('iofilter-dm-sentinel');
      // a dm target module is loaded on demand by the kernel (request_module through the chroot's modprobe)
      await g.vm.sh(`dmsetup create iof-stock-fl --table "0 32768 flakey ${loop} 0 0 5" && grep -qw dm_flakey /proc/modules`);
    } finally {
      await g.vm.exec(`dmsetup remove iof-stock-fl; dmsetup remove iof-stock-lin; losetup -d ${loop}; rm -f ${img}`);
    }
  });

  test('the kernel stayed healthy', async () => {
    expect(await g.oopses()).toBe('');
  });
});
