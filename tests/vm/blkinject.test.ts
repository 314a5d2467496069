// The blkinject backend in the VM. On a kernel with CONFIG_BLK_ERROR_INJECTION (the 7.2
// builds of this project; in CI distro-7.2): the agent attached to nothing serves error statuses through
// /sys/kernel/debug/block/DISK/error_injection, and a direct-I/O program (tests/vm/lib/
// dio.c) shows the errno an application gets for EIO, ENOSPC, ENODATA, ETIMEDOUT and
// EREMOTEIO, only inside the range, with I/O running elsewhere; partition offsets both
// through the partition and through the disk; reads-only and writes-only; chance=N
// failing about 1 in N (binomial bound); delete leaving an empty rule list; the TTL
// ended by the watchdog with the agent SIGKILLed, measured on the guest clock; and
// refusals leaving the file unchanged. On a kernel without it (Debian sid's stock 7.2,
// or a test kernel before 7.2): the capability says why, and --error enospc is refused
// naming what would work.
import * as grpc from '@grpc/grpc-js';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { ROOT } from '../helpers/common';
import { BUILT_WITH_BLKINJECT, Guest, KERNEL } from '../helpers/guest';
import { grpcRefusalOf as refusalOf } from '../helpers/refusal';
import { describeIf } from '../helpers/tier';
import { vmUnavailableReason } from '../helpers/vm';

const d = describeIf(vmUnavailableReason());
jest.setTimeout(900_000);

const STATE = '/dev/shm/iofilter-state';
const AGENT = ['--attach', 'none', '--state-dir', STATE];
const DIO = path.join(ROOT, 'build', 'dio-vm');
const status = (s: string) => ({ error: { status: s } });

d(`VM blkinject backend on ${KERNEL}`, () => {
  let g: Guest;
  const file = (dev: string) => `/sys/kernel/debug/block/${path.basename(dev)}/error_injection`;
  const rules = (dev: string) => g.vm.sh(`cat ${file(dev)}`);
  /** dio in the guest: "ok" or an errno name; with a repeat count, "ok=N ENODATA=M". */
  const dio = (dev: string, op: 'read' | 'write', sector: number, count = 8, repeat = 1) => g.vm.sh(`${DIO} ${dev} ${op} ${sector} ${count} ${repeat}`);

  beforeAll(async () => {
    const cc = spawnSync('cc', ['-O2', '-Wall', '-o', DIO, path.join(ROOT, 'tests', 'vm', 'lib', 'dio.c')], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`cc tests/vm/lib/dio.c: ${cc.stderr}`);
    g = await Guest.boot(AGENT);
  }, 900_000);

  afterAll(async () => {
    await g?.shutdown();
  }, 60_000);

  if (!BUILT_WITH_BLKINJECT) {
    test('capability: unavailable with the reason; --error enospc refused naming what would work; nothing in force', async () => {
      const st = await g.client.status();
      const cap = st.backends.find((b) => b.backend === 'BACKEND_BLKINJECT');
      console.log(`blkinject on ${KERNEL} (${st.kernelRelease}): ${JSON.stringify(cap)}`);
      // Debian's config says so; a test kernel before 7.2 may have no config to read
      const cfg = KERNEL === 'stock-sid' ? /\(CONFIG_BLK_ERROR_INJECTION is not set\)/ : /\((its config has no CONFIG_BLK_ERROR_INJECTION \(added in Linux 7\.2\)|no kernel config found to say why)\)/;
      expect(cap).toMatchObject({ available: false, reason: expect.stringMatching(/^this kernel \(\S+\) has no block error injection: no disk in \/sys\/kernel\/debug\/block has an error_injection file/) });
      expect(cap!.reason).toMatch(cfg);
      expect(cap!.reason).toMatch(/It needs CONFIG_BLK_ERROR_INJECTION \(Linux 7\.2\+; Debian sid 7\.2 ships it off\)$/);
      const dev = g.parts[0].path;
      const auto = await refusalOf(g.client.setFilter({ device: dev, ranges: [{ start: 0, end: 7, ops: ['OP_WRITE'] }], fault: status('ERROR_STATUS_NOSPC'), ttlMs: 60_000 }));
      expect(auto.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(auto.details).toMatch(
        /^no backend can do error ENOSPC on loop\d+p1 exactly as asked: bpf: .*fails with EIO only.*; dm: .*; blkinject: blkinject unavailable: this kernel .*\. What would work: the blkinject backend, on a kernel with CONFIG_BLK_ERROR_INJECTION \(Linux 7\.2\+; Debian sid 7\.2 ships it off\) and debugfs mounted/,
      );
      const named = await refusalOf(g.client.setFilter({ device: dev, ranges: [{ start: 0, end: 7, ops: ['OP_WRITE'] }], fault: status('ERROR_STATUS_NOSPC'), backend: 'BACKEND_BLKINJECT', ttlMs: 60_000 }));
      expect(named.details).toMatch(/^backend blkinject: blkinject unavailable: this kernel/);
      expect((await g.client.status()).filters).toEqual([]);
      expect(await dio(dev, 'write', 0)).toBe('ok');
    });
    return;
  }

  afterEach(async () => {
    // every test leaves both disks' rule lists empty (a failed one is cleaned up for the next)
    const left = (await rules(g.disk)) + (await rules(g.pdisk));
    if (left) await g.client.clearFilters().catch(() => undefined);
    expect(left).toBe('');
    expect((await g.client.status()).filters).toEqual([]);
  });

  test('Status: blkinject available; every disk has its error_injection file', async () => {
    const st = await g.client.status();
    expect(st.backends.find((b) => b.backend === 'BACKEND_BLKINJECT')).toMatchObject({ available: true, reason: '', detail: expect.stringMatching(/^per-disk rules/) });
    expect(await g.vm.sh(`ls ${file(g.disk)} ${file(g.pdisk)} | wc -l`)).toBe('2');
  });

  test('each status gives its errno to direct I/O, only inside the range, with I/O running elsewhere; delete leaves an empty list', async () => {
    const bg = `/dev/shm/bg.out`;
    await g.vm.sh(
      `rm -f /dev/shm/stop; (for i in $(seq 600); do o=$(${DIO} ${g.disk} write 60000 8 10); [ "$o" = ok=10 ] || echo "W $o"; o=$(${DIO} ${g.disk} read 70000 8 10); [ "$o" = ok=10 ] || echo "R $o"; ` +
        `[ -e /dev/shm/stop ] && break; done > ${bg} 2>&1; echo done >> ${bg}) >/dev/null 2>&1 &`,
    );
    const cases: [string, string, string][] = [
      ['ERROR_STATUS_IOERR', 'IOERR', 'EIO'],
      ['ERROR_STATUS_NOSPC', 'NOSPC', 'ENOSPC'],
      ['ERROR_STATUS_MEDIUM', 'MEDIUM', 'ENODATA'],
      ['ERROR_STATUS_TIMEOUT', 'TIMEOUT', 'ETIMEDOUT'],
      ['ERROR_STATUS_TARGET', 'TARGET', 'EREMOTEIO'],
    ];
    const ids: number[] = [];
    for (const [wire, tag, errno] of cases) {
      // the same device again: a replace (same id), the list rebuilt
      const f = await g.client.setFilter({ device: g.disk, ranges: [{ start: 1000, end: 1999, ops: ['OP_READ', 'OP_WRITE'] }], fault: status(wire), ttlMs: 600_000 });
      expect(f).toMatchObject({ backend: 'BACKEND_BLKINJECT', fault: status(wire), notCounted: expect.stringMatching(/^not counted/) });
      ids.push(f.id);
      expect(await rules(g.disk)).toBe(`1000:1999 op=READ,status=${tag},chance=1\n1000:1999 op=WRITE,status=${tag},chance=1`);
      expect([await dio(g.disk, 'write', 1000, 1), await dio(g.disk, 'read', 1999, 1), await dio(g.disk, 'read', 1996, 8)]).toEqual([errno, errno, errno]);
      expect([await dio(g.disk, 'read', 992, 8), await dio(g.disk, 'write', 2000, 8)]).toEqual(['ok', 'ok']);
    }
    expect(ids).toEqual(cases.map(() => ids[0])); // each set replaced the filter, keeping its id
    // through the page cache the status is lost (buffer heads keep only "failed"): fsync and buffered reads say EIO
    await g.client.setFilter({ device: g.disk, ranges: [{ start: 1000, end: 1999, ops: ['OP_READ', 'OP_WRITE'] }], fault: status('ERROR_STATUS_NOSPC'), ttlMs: 600_000 });
    expect(await g.vm.exec(`dd if=/dev/zero of=${g.disk} bs=4096 count=1 seek=125 conv=fsync,notrunc status=none`)).toMatchObject({ code: 1, stderr: expect.stringMatching(/fsync failed.*Input\/output error/) });
    await g.client.setFilter({ device: g.disk, ranges: [{ start: 1000, end: 1999, ops: ['OP_READ', 'OP_WRITE'] }], fault: status('ERROR_STATUS_MEDIUM'), ttlMs: 600_000 });
    expect(await g.vm.exec(`echo 3 > /proc/sys/vm/drop_caches; dd if=${g.disk} of=/dev/null bs=4096 count=1 skip=125 status=none`)).toMatchObject({ code: 1, stderr: expect.stringMatching(/error reading.*Input\/output error/) });
    expect((await g.client.deleteFilter(g.disk)).existed).toBe(true);
    expect(await rules(g.disk)).toBe('');
    expect(await dio(g.disk, 'write', 1000, 8)).toBe('ok');
    await g.vm.sh(`touch /dev/shm/stop; for t in $(seq 600); do grep -q done ${bg} && break; sleep 0.1; done`);
    expect(await g.vm.sh(`cat ${bg}`)).toBe('done'); // the I/O elsewhere never failed
  });

  test('partitions: rules at the partition offset, hit through the partition and through the disk; reads-only and writes-only; two filters on one disk', async () => {
    const [p1, p2] = g.parts;
    const fr = await g.client.setFilter({ device: p2.path, ranges: [{ start: 0, end: 7, ops: ['OP_READ'] }], fault: status('ERROR_STATUS_MEDIUM'), ttlMs: 600_000 });
    const fw = await g.client.setFilter({ device: p1.path, ranges: [{ start: 100, end: 107, ops: ['OP_WRITE'] }], fault: status('ERROR_STATUS_NOSPC'), ttlMs: 600_000 });
    expect(fw.device).toMatchObject({ name: path.basename(p1.path), startSector: String(p1.start) });
    // newest first: the second filter was added in front of the first
    expect(await rules(g.pdisk)).toBe(`${p1.start + 100}:${p1.start + 107} op=WRITE,status=NOSPC,chance=1\n${p2.start}:${p2.start + 7} op=READ,status=MEDIUM,chance=1`);
    expect(await dio(p2.path, 'read', 0, 8)).toBe('ENODATA');
    expect(await dio(g.pdisk, 'read', p2.start + 7, 1)).toBe('ENODATA'); // the same sectors through the disk
    expect(await dio(p2.path, 'write', 0, 8)).toBe('ok'); // reads only
    expect(await dio(p2.path, 'read', 8, 8)).toBe('ok');
    expect(await dio(g.pdisk, 'read', p2.start - 8, 8)).toBe('ok'); // the end of p1, just before
    expect(await dio(p1.path, 'write', 100, 1)).toBe('ENOSPC');
    expect(await dio(g.pdisk, 'write', p1.start + 107, 1)).toBe('ENOSPC');
    expect(await dio(p1.path, 'read', 100, 8)).toBe('ok'); // writes only
    expect(await dio(p1.path, 'write', 108, 8)).toBe('ok');
    expect(await dio(p1.path, 'write', 92, 8)).toBe('ok');
    expect(await dio(p1.path, 'read', 0, 8)).toBe('ok');
    expect((await g.client.deleteFilter({ id: fr.id })).existed).toBe(true);
    expect(await rules(g.pdisk)).toBe(`${p1.start + 100}:${p1.start + 107} op=WRITE,status=NOSPC,chance=1`);
    expect(await dio(p2.path, 'read', 0, 8)).toBe('ok');
    expect((await g.client.deleteFilter(p1.path)).existed).toBe(true);
    expect(await rules(g.pdisk)).toBe('');
  });

  test('probability 1/4 is chance=4: 2000 reads fail about a quarter (binomial bound), all with the status; none outside the range', async () => {
    await g.client.setFilter({ device: g.disk, ranges: [{ start: 3000, end: 3007, ops: ['OP_READ'] }], fault: status('ERROR_STATUS_MEDIUM'), probability: 0.25, ttlMs: 600_000 });
    expect(await rules(g.disk)).toBe('3000:3007 op=READ,status=MEDIUM,chance=4');
    const n = 2000;
    const m = /^ok=(\d+) ENODATA=(\d+)$/.exec(await dio(g.disk, 'read', 3000, 8, n));
    expect(m).not.toBeNull();
    const [ok, failed] = [Number(m![1]), Number(m![2])];
    // mean 500, sd sqrt(2000 * 1/4 * 3/4) = 19.4: 6 sd either side, a false alarm about once in 10^9 runs
    console.log(`chance=4 over ${n} reads: ${failed} failed (${((100 * failed) / n).toFixed(1)} %)`);
    expect(ok + failed).toBe(n);
    expect(failed).toBeGreaterThanOrEqual(384);
    expect(failed).toBeLessThanOrEqual(616);
    expect(await dio(g.disk, 'read', 3008, 8, 200)).toBe('ok=200');
    await g.client.deleteFilter(g.disk);
  });

  test('refusals: a clear error, the rule list unchanged (also when it holds a rule iofilter did not set)', async () => {
    await g.vm.sh('mkdir -p /sys/fs/cgroup/ioftest');
    const base = { device: g.disk, fault: status('ERROR_STATUS_NOSPC'), ttlMs: 60_000 };
    const cases: [string, object, RegExp][] = [
      ['flush', { ranges: [{ start: 0, end: 7, ops: ['OP_WRITE', 'OP_FLUSH'] }] }, /blkinject: ranges\[0\] \(0-7\) ops write,flush: block error injection cannot fail flushes/],
      ['probability not 1/N', { ranges: [{ start: 0, end: 7, ops: ['OP_READ'] }], probability: 0.3, backend: 'BACKEND_BLKINJECT' }, /^backend blkinject: probability 0.3: .*the nearest are 1\/3 \(0\.3333\) and 1\/4 \(0\.25\)/],
      ['cgroup scope', { ranges: [{ start: 0, end: 7, ops: ['OP_READ'] }], cgroupPath: '/ioftest', backend: 'BACKEND_BLKINJECT' }, /^backend blkinject: cgroup scope/],
      ['max failures', { ranges: [{ start: 0, end: 7, ops: ['OP_READ'] }], maxFailures: 3, backend: 'BACKEND_BLKINJECT' }, /^backend blkinject: max_failures/],
    ];
    for (const [name, fields, why] of cases) {
      const r = await refusalOf(g.client.setFilter({ ...base, ...fields }));
      expect([name, r.code, r.details]).toEqual([name, grpc.status.FAILED_PRECONDITION, expect.stringMatching(why)]);
      expect(await rules(g.disk)).toBe('');
    }
    const foreign = 'add,op=READ,status=IOERR,start=5,nr_sectors=1';
    await g.vm.sh(`echo ${foreign} > ${file(g.disk)}`);
    try {
      const r = await refusalOf(g.client.setFilter({ ...base, ranges: [{ start: 100, end: 107, ops: ['OP_READ'] }] }));
      expect(r.details).toMatch(/blkinject: disk loop\d+ already has block error injection rules that iofilter did not set:\n5:5 op=READ,status=IOERR,chance=1\n/);
      expect(await rules(g.disk)).toBe('5:5 op=READ,status=IOERR,chance=1');
    } finally {
      await g.vm.sh(`echo removeall > ${file(g.disk)}`);
    }
  });

  test('TTL with the agent SIGKILLed: the watchdog empties the list at the deadline, by the guest clock', async () => {
    const ttl = 10_000;
    const t0 = await g.uptimeMs();
    await g.client.setFilter({ device: g.disk, ranges: [{ start: 5000, end: 5007, ops: ['OP_WRITE'] }], fault: status('ERROR_STATUS_NOSPC'), ttlMs: ttl });
    const t1 = await g.uptimeMs();
    await g.killAgent('KILL');
    expect(await dio(g.disk, 'write', 5000, 8)).toBe('ENOSPC'); // still in force with the agent gone
    const end = Number(await g.vm.sh(`for t in $(seq 1200); do [ -z "$(cat ${file(g.disk)})" ] && break; sleep 0.05; done; cut -d" " -f1 /proc/uptime`, 300_000)) * 1000;
    expect(await rules(g.disk)).toBe('');
    expect(end).toBeGreaterThanOrEqual(t0 + ttl);
    console.log(`blkinject TTL ${ttl} ms: list emptied ${Math.round(end - t1 - ttl)} ms after the latest deadline (set took ${t1 - t0} ms)`);
    expect(await g.vm.exec(`pgrep -f '[d]ist/agent/main.js'`)).toMatchObject({ code: 1 });
    expect(await dio(g.disk, 'write', 5000, 8)).toBe('ok');
    expect(await g.vm.exec(`for t in $(seq 300); do pgrep -f '[w]atchdog.js' >/dev/null || exit 0; sleep 0.1; done; exit 1`)).toMatchObject({ code: 0 });
    await g.startAgent(AGENT);
  }, 900_000);
});
