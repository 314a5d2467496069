// Grace periods on ONE vCPU (IOFILTER_VM_CPUS=1 for this suite's guest), where the old
// mechanism waited for nothing: membarrier(MEMBARRIER_CMD_GLOBAL) returns at once on one
// online CPU, and a 1 s sleep stood in. The test kernel is CONFIG_PREEMPT, so a program
// under a trampoline (fentry, fmod_ret: rcu_read_lock() + migrate_disable()) can be
// preempted mid-run; the agent's grace period (native/pools.cc RcuGrace) must wait for it.
import * as fs from 'node:fs';
import { KERNEL, SERIES } from '../helpers/guest';
import { matrixCase, matrixRefused, setRelease, writeMatrix } from '../helpers/matrix';
import { buildHoldProgram, buildPoolsHarness, parseInflight } from '../helpers/pools-harness';
import { describeIf } from '../helpers/tier';
import { Vm, vmUnavailableReason } from '../helpers/vm';

const d = describeIf(vmUnavailableReason());
const PIN = '/sys/fs/bpf/iofilter-grace';
const BPF_LOOP = SERIES !== '5.10'; // the held program's bpf_loop: 5.17+

d(`VM grace periods on Linux ${KERNEL}, one vCPU`, () => {
  let vm: Vm;
  let harness: string;
  let hold: string;

  beforeAll(async () => {
    // built here, under /var/tmp, which the guest shares (its /tmp is its own)
    harness = buildPoolsHarness('/var/tmp');
    hold = buildHoldProgram('/var/tmp');
    const cpus = process.env.IOFILTER_VM_CPUS;
    process.env.IOFILTER_VM_CPUS = '1'; // this guest only: other suites keep their setting
    try {
      vm = await Vm.boot();
    } finally {
      if (cpus === undefined) delete process.env.IOFILTER_VM_CPUS;
      else process.env.IOFILTER_VM_CPUS = cpus;
    }
    const release = await vm.sh('uname -r');
    setRelease(release);
    expect(release.startsWith(`${SERIES}.`)).toBe(true);
    expect(await vm.sh('nproc')).toBe('1');
  }, 600_000);

  afterAll(async () => {
    writeMatrix(KERNEL, 'grace');
    await vm?.shutdown();
    for (const f of [harness, hold]) if (f) fs.rmSync(f.replace(/\/[^/]+$/, ''), { recursive: true, force: true });
  }, 60_000);

  if (!BPF_LOOP)
    test('no program can be held running here (bpf_loop is 5.17+): the harness says it cannot load it', async () => {
      const r = await vm.exec(`${harness} inflight ${hold} ${1 << 22} 2>/dev/null`, 600_000);
      expect(r.stdout.trim()).toBe(`error setup loading ${hold}`);
      matrixRefused(KERNEL, 'fmod_ret', 'grace period, 1 vCPU', 'the test program needs bpf_loop (5.17+)');
    });
  else
    test('the grace period returns only after a preempted fentry program running when it began has finished', matrixCase(KERNEL, 'fmod_ret', 'grace period, 1 vCPU', async () => {
      // 2^22 bpf_loop callbacks (at most 2^23) of 64 atomic adds: seconds under TCG, so
      // the program is preempted (its thread's slice ends) and the harness's main thread
      // calls the grace period while it is inside. The old mechanism, membarrier (which
      // returns at once on one CPU) + 1 s, returned with the program still running.
      const r = await vm.exec(`${harness} inflight ${hold} ${1 << 22} 2>/dev/null`, 600_000);
      expect(r.code).toBe(0);
      const lines = r.stdout.trim().split('\n');
      expect(lines).toHaveLength(1);
      const got = parseInflight(lines[0]);
      expect(got.hook).toMatch(/getpgid/); // fentry: preemptible, unlike tp_btf
      expect({ doneAfter: got.doneAfter, spins: got.spins, run: got.run }).toEqual({ doneAfter: 1, spins: 64 * (1 << 22), run: 0 });
      console.log(`1 vCPU: ${lines[0]}`);
    }), 900_000);

  test('fmod_ret: a 30-range filter replaced 200 times in a 32-range pool with I/O running: every change waits for a grace period and completes, the other disk sees zero failures', matrixCase(KERNEL, 'fmod_ret', 'replace churn, 1 vCPU', async () => {
    const loop = (img: string) => vm.sh(`truncate -s 64M /dev/shm/${img} && (losetup -f --show --direct-io=on /dev/shm/${img} 2>/dev/null || losetup -f --show /dev/shm/${img})`);
    const A = await loop('ga.img');
    const B = await loop('gb.img');
    const [maj, min] = (await vm.sh(`stat -c '%t %T' ${A}`)).split(' ').map((h) => parseInt(h, 16));
    // A: writes at sector 0 (inside range 0 of every version of the filter); B: writes + fsync
    await vm.sh(
      'rm -f /dev/shm/stop /dev/shm/a.log /dev/shm/b.log; ' +
        `(while [ ! -e /dev/shm/stop ]; do dd if=/dev/zero of=${A} bs=4096 count=1 oflag=direct conv=notrunc status=none 2>/dev/null; echo $? >> /dev/shm/a.log; done) >/dev/null 2>&1 & ` +
        `(while [ ! -e /dev/shm/stop ]; do dd if=/dev/zero of=${B} bs=4096 count=1 seek=$((RANDOM % 4096)) oflag=direct conv=notrunc,fsync status=none 2>/dev/null; echo $? >> /dev/shm/b.log; done) >/dev/null 2>&1 &`,
    );
    let out: string;
    try {
      // 30 > (2 * 32 + 16) / 3: each change needs the 30 slots the one before quarantined
      const r = await vm.exec(`node dist/tests/helpers/replace-child.js ${PIN} ${maj} ${min} 32 30 200 fmod_ret`, 600_000);
      out = r.stdout.trim();
      expect(r.code).toBe(0);
    } finally {
      await vm.exec('touch /dev/shm/stop; sleep 1; rm -rf ' + PIN);
    }
    expect(out).toMatch(/^\{"ok":true,"ranges":30,"ms":\d+\}$/);
    const a = (await vm.sh('cat /dev/shm/a.log')).split('\n').filter(Boolean);
    const b = (await vm.sh('cat /dev/shm/b.log')).split('\n').filter(Boolean);
    expect(a.filter((rc) => rc !== '0').length).toBeGreaterThan(0); // the filter on A failed writes meanwhile
    expect(b.length).toBeGreaterThan(20);
    expect(b.filter((rc) => rc !== '0')).toEqual([]); // zero failed I/O on B
    expect((await vm.exec('dmesg | grep -E "BUG:|Oops:|Kernel panic|general protection fault|WARNING:|rcu.*stall" || true')).stdout.trim()).toBe('');
    console.log(`1 vCPU: 200 replaces ${out}, A ${a.length} writes (${a.filter((rc) => rc !== '0').length} failed), B ${b.length} writes`);
  }), 900_000);
});
