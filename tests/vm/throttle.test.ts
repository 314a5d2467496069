// The throttle backend in the VM (IOFILTER_KERNEL; Debian's stock kernels have
// CONFIG_BLK_DEV_THROTTLING=y): cgroup v2 io.max on a loop disk, the agent attached to
// nothing. fio with direct writes in the throttled cgroup runs at the limit (within 10 %),
// fio in a sibling cgroup at the same time is not held back (at least 3x the limit), the
// unthrottled rate measured first in the same run shows the margin is real; delete, halt
// and a TTL with the agent SIGKILLed (the watchdog) bring back the cgroup's io.max byte
// for byte, a pre-existing line with other values included; every refusal leaves io.max
// as it was, and the kernel itself refuses a partition's MAJ:MIN.
import * as grpc from '@grpc/grpc-js';
import { Guest, KERNEL } from '../helpers/guest';
import { grpcRefusalOf as refusalOf } from '../helpers/refusal';
import { describeIf } from '../helpers/tier';
import { vmUnavailableReason } from '../helpers/vm';

const d = describeIf(vmUnavailableReason());
jest.setTimeout(900_000); // TCG on a loaded machine

const STATE = '/dev/shm/iofilter-state';
const AGENT = ['--attach', 'none', '--state-dir', STATE];
const CG = '/sys/fs/cgroup';
const A = 'ioft-a'; // throttled
const B = 'ioft-b'; // its sibling
const KiB = 1024;
const MiB = 1024 * KiB;

d(`VM throttle backend (cgroup io.max) on Linux ${KERNEL}`, () => {
  let g: Guest;
  let devno = '';
  const ioMax = (cg = A) => g.vm.sh(`cat ${CG}/${cg}/io.max`);

  /**
   * fio direct 64 KiB writes for `secs` s in each cgroup at once, each in its own 16 MiB
   * of the disk; bytes/s per cgroup. Queue depth 16 (1 MiB), so bios always wait in the
   * throttle. Before 7.x blk-throttle's throtl_trim_slice drops the credit of a dispatch
   * that came late (7.2 keeps one slice for it: "timer wakeup delay ... causing lower
   * rate than expected"), so a synchronous writer, or a guest whose timers fire late
   * (a loaded emulator, a busy sibling) runs below the limit: measured in TCG on trixie's
   * 6.12 at 4.3 MiB/s, 0.4-0.9x with queue depths 1-64 at host load 13, 1.00x at 1 MiB/s
   * in the same boot, 0.80x at 1 MiB/s beside a sibling writing 133 MiB/s.
   */
  async function fio(cgroups: string[], secs = 6): Promise<number[]> {
    const jobs = cgroups.map(
      (cg, i) =>
        `bash -c 'echo $$ > ${CG}/${cg}/cgroup.procs && exec fio --name=${cg} --filename=${g.disk} --rw=write --bs=64k --direct=1 --ioengine=libaio --iodepth=16 ` +
        `--offset=${i * 16}M --size=16M --time_based --runtime=${secs} --output-format=json --output=/dev/shm/fio-${i}.json' &`,
    );
    await g.vm.sh(`${jobs.join(' ')} wait`, 300_000);
    const out: number[] = [];
    for (let i = 0; i < cgroups.length; i++) {
      const j = JSON.parse(await g.vm.sh(`cat /dev/shm/fio-${i}.json`)) as { jobs: { write: { bw_bytes: number; runtime: number } }[] };
      expect(j.jobs[0].write.runtime).toBeGreaterThanOrEqual(secs * 1000 - 100);
      out.push(j.jobs[0].write.bw_bytes);
    }
    return out;
  }

  beforeAll(async () => {
    g = await Guest.boot(AGENT);
    devno = await g.vm.sh(`cat /sys/class/block/${g.disk.slice(5)}/dev`);
    // io for the root's children; A's child "sub" gets no io (A does not pass it on)
    await g.vm.sh(`echo +io > ${CG}/cgroup.subtree_control && mkdir -p ${CG}/${A}/sub ${CG}/${B}`);
    expect(await g.vm.sh(`cat ${CG}/${A}/cgroup.controllers`)).toMatch(/\bio\b/);
    expect(await g.vm.sh(`cat ${CG}/${A}/sub/cgroup.controllers`)).not.toMatch(/\bio\b/);
  }, 900_000);

  afterAll(async () => {
    await g?.shutdown();
  }, 60_000);

  afterEach(async () => {
    // each test starts with no filter and no io.max line for the disk, whatever the last one did
    const left = (await g.client.status()).filters;
    if (left.length) await g.client.clearFilters().catch(() => undefined);
    await g.vm.sh(`for c in ${A} ${B}; do echo "${devno} rbps=max wbps=max riops=max wiops=max" > ${CG}/$c/io.max; done`);
    expect(left).toEqual([]);
  });

  test('Status: throttle available (cgroup2, io at the root, io.max present)', async () => {
    const st = await g.client.status();
    expect(st.backends.find((b) => b.backend === 'BACKEND_THROTTLE')).toMatchObject({ available: true, reason: '', detail: expect.stringMatching(/^cgroup v2 io.max .* under \/sys\/fs\/cgroup$/) });
  });

  // How far below the limit the throttled cgroup runs depends on how late the guest's timers
  // fire (see fio above): in this loaded TCG guest (host load ~18 on 2 cores) it ran alone at
  // 0.64x (bookworm 6.1), 0.96x (trixie 6.12) and 0.89x (sid 7.2), so the test holds the rate
  // to at most the limit (+10 %) and reports it; a lower bound would measure the emulator.
  test('fio in the throttled cgroup runs at no more than wbps (+10 %), its sibling alone and beside it at 3x or more; delete restores a pre-existing line byte for byte', async () => {
    const [unthrottled] = await fio([B]);
    // a limit far below what the disk does here (a loaded TCG guest keeps up with it:
    // trixie's 6.12 alone at 1.00x while 4.3 MiB/s came out at 0.4-0.9x on a host at load 13)
    const limit = MiB;
    expect(unthrottled).toBeGreaterThanOrEqual(8 * limit);
    // A already limits something else on this disk: that line must come back exactly
    await g.vm.sh(`echo "${devno} rbps=3000000 riops=77" > ${CG}/${A}/io.max`);
    const before = await ioMax();
    expect(before).toBe(`${devno} rbps=3000000 wbps=max riops=77 wiops=max`);

    const r = await g.client.setFilterResponse({ device: g.disk, cgroupPath: `/${A}`, fault: { throttle: { wbps: String(limit) } }, ttlMs: 600_000 });
    expect(r.filter).toMatchObject({ backend: 'BACKEND_THROTTLE', cgroup: { path: `/${A}` }, fault: { throttle: { wbps: String(limit), rbps: '0' } }, hasExpiry: true });
    expect(await ioMax()).toBe(`${devno} rbps=max wbps=${limit} riops=max wiops=max`);
    const st = (await g.client.status()).filters;
    expect(st).toEqual([expect.objectContaining({ id: r.filter!.id, backend: 'BACKEND_THROTTLE', cgroup: expect.objectContaining({ path: `/${A}` }), notCounted: expect.stringMatching(/^not counted/) })]);
    expect(Number(st[0].remainingMs)).toBeGreaterThan(500_000);

    // the rate, measured alone: a busy sibling in this 2-CPU TCG guest delays the throttle's
    // timers, and kernels before 7.x drop the credit of a late dispatch (see fio above)
    const [throttled] = await fio([A], 8);
    const [siblingAlone] = await fio([B]);
    // both at once: the sibling is not held back, the throttled cgroup never exceeds the limit
    const [during, sibling] = await fio([A, B], 8);
    const pct = (x: number) => `${((x / limit - 1) * 100).toFixed(1)} %`;
    console.log(
      `throttle on ${KERNEL}: unthrottled ${(unthrottled / MiB).toFixed(1)} MiB/s; wbps ${(limit / MiB).toFixed(3)} MiB/s -> throttled cgroup ${(throttled / MiB).toFixed(3)} MiB/s (${pct(throttled)}); ` +
        `sibling while A is throttled ${(siblingAlone / MiB).toFixed(1)} MiB/s alone, ${(sibling / MiB).toFixed(1)} MiB/s (${(sibling / limit).toFixed(1)}x the limit) beside A, which ran at ${(during / MiB).toFixed(3)} MiB/s (${pct(during)})`,
    );
    expect(throttled / limit - 1).toBeLessThanOrEqual(0.1);
    expect(throttled).toBeGreaterThan(0);
    expect(siblingAlone).toBeGreaterThanOrEqual(3 * limit);
    expect(sibling).toBeGreaterThanOrEqual(3 * limit);
    expect(during).toBeLessThanOrEqual(1.1 * limit);

    // an unscoped delete would leave it in force: refused, nothing changed
    expect((await refusalOf(g.client.deleteFilter(g.disk))).details).toMatch(new RegExp(`a throttle filter .*filter ${r.filter!.id} for cgroup /${A} \\(delete it with --cgroup /${A} or --id ${r.filter!.id}\\)`));
    expect(await ioMax()).toBe(`${devno} rbps=max wbps=${limit} riops=max wiops=max`);
    // delete by device with the cgroup scope
    expect(await g.client.deleteFilter({ device: g.disk, cgroupPath: `/${A}` })).toMatchObject({ existed: true, removed: 1 });
    expect(await ioMax()).toBe(before);
    await g.vm.sh(`echo "${devno} rbps=max riops=max" > ${CG}/${A}/io.max`);
    expect(await ioMax()).toBe('');
  });

  test('no line before: delete by id removes the line; halt (ClearFilters) does too; two cgroups on one disk', async () => {
    const a = await g.client.setFilter({ device: devno, cgroupPath: `/${A}`, fault: { throttle: { riops: '100', wiops: '200' } }, backend: 'BACKEND_THROTTLE', ttlMs: 600_000 });
    expect(await ioMax()).toBe(`${devno} rbps=max wbps=max riops=100 wiops=200`);
    expect((await g.client.deleteFilter({ id: a.id })).existed).toBe(true);
    expect(await ioMax()).toBe('');
    await g.client.setFilter({ device: devno, cgroupPath: `/${A}`, fault: { throttle: { rbps: String(MiB) } }, ttlMs: 600_000 });
    await g.client.setFilter({ device: devno, cgroupPath: `/${B}`, fault: { throttle: { wbps: String(2 * MiB) } }, ttlMs: 600_000 });
    expect(await ioMax(B)).toBe(`${devno} rbps=max wbps=${2 * MiB} riops=max wiops=max`);
    expect((await g.client.status()).filters).toHaveLength(2);
    expect(await g.client.clearFilters()).toEqual({ removed: 2 });
    expect(await ioMax()).toBe('');
    expect(await ioMax(B)).toBe('');
  });

  test('TTL with the agent SIGKILLed: the watchdog restores the line at the deadline, by the guest clock', async () => {
    await g.vm.sh(`echo "${devno} wiops=55" > ${CG}/${A}/io.max`);
    const before = await ioMax();
    const ttl = 10_000;
    const t0 = await g.uptimeMs();
    await g.client.setFilter({ device: g.disk, cgroupPath: `/${A}`, fault: { throttle: { wbps: String(MiB) } }, ttlMs: ttl });
    const t1 = await g.uptimeMs();
    await g.killAgent('KILL');
    try {
      expect(await ioMax()).toBe(`${devno} rbps=max wbps=${MiB} riops=max wiops=max`); // in force with the agent gone
      const end = Number(await g.vm.sh(`for t in $(seq 1200); do [ "$(cat ${CG}/${A}/io.max)" = "${before}" ] && break; sleep 0.05; done; cut -d" " -f1 /proc/uptime`, 300_000)) * 1000;
      expect(await ioMax()).toBe(before);
      expect(end).toBeGreaterThanOrEqual(t0 + ttl);
      console.log(`throttle TTL ${ttl} ms on ${KERNEL}: restored ${Math.round(end - t1 - ttl)} ms after the latest deadline (set took ${t1 - t0} ms)`);
      expect(await g.vm.exec(`for t in $(seq 300); do pgrep -f '[w]atchdog.js' >/dev/null || exit 0; sleep 0.1; done; exit 1`)).toMatchObject({ code: 0 });
    } finally {
      await g.startAgent(AGENT);
    }
  }, 900_000);

  describe('refusals: a clear error, io.max unchanged', () => {
    const T = { throttle: { wbps: String(MiB) } };
    const cases: [string, () => object, RegExp][] = [
      ['the root cgroup', () => ({ device: g.disk, cgroupPath: '/', fault: T }), /the root cgroup: the kernel does not throttle it/],
      ['a cgroup without io', () => ({ device: g.disk, cgroupPath: `/${A}/sub`, fault: T }), new RegExp(`io controller is not enabled for /${A}/sub .*${CG}/${A}/cgroup.subtree_control needs \\+io`)],
      ['no cgroup scope', () => ({ device: g.disk, fault: T, backend: 'BACKEND_THROTTLE' }), /no cgroup scope/],
      ['a partition', () => ({ device: g.parts[0].path, cgroupPath: `/${A}`, fault: T }), /is a partition of loop\d+: io.max limits whole disks.*set the filter on \/dev\/loop\d+/],
      ['ranges', () => ({ device: g.disk, cgroupPath: `/${A}`, fault: T, ranges: [{ start: 0, end: 99 }] }), /ranges: io.max limits a whole device/],
      ['probability', () => ({ device: g.disk, cgroupPath: `/${A}`, fault: T, probability: 0.5 }), /probability 0.5/],
      ['a limit of 1', () => ({ device: g.disk, cgroupPath: `/${A}`, fault: { throttle: { riops: '1' } } }), /riops=1: the kernel's smallest limit is 2/],
      ['EIO on the throttle backend', () => ({ device: g.disk, cgroupPath: `/${A}`, wholeDeviceOps: ['OP_WRITE'], backend: 'BACKEND_THROTTLE' }), /serves throttle faults .* only; error EIO is served by the bpf backend or the dm backend/],
    ];
    // A has a line of its own for the disk throughout: each refusal must leave it as it is
    const before = () => `${devno} rbps=4000000 wbps=max riops=max wiops=max`;
    beforeEach(() => g.vm.sh(`echo "${devno} rbps=4000000" > ${CG}/${A}/io.max`));

    test.each(cases)('%s', async (_n, req, why) => {
      const r = await refusalOf(g.client.setFilter({ ttlMs: 60_000, ...req() }));
      expect(r).toEqual({ code: grpc.status.FAILED_PRECONDITION, details: expect.stringMatching(why) });
      expect(await ioMax()).toBe(before());
    });

    test("the kernel itself refuses a partition's MAJ:MIN (ENODEV), as the refusal says", async () => {
      const p = await g.vm.sh(`cat /sys/class/block/${g.parts[0].path.slice(5)}/dev`);
      const r = await g.vm.exec(`echo "${p} wbps=1048576" > ${CG}/${A}/io.max`);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/No such device/);
      expect(await ioMax()).toBe(before());
    });
  });
});
