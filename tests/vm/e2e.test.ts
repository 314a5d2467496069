// End-to-end on a kernel with error injection: the agent runs in the test VM, this
// process is the control host (library and CLI over real TCP through the forwarded
// port), and direct I/O with dd on loop devices in the guest must fail with EIO - or
// not - exactly as the filters say.
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { IoFilterClient } from '../../client';
import type { StatusResponse__Output } from '../../proto/gen/iofilter/v1/StatusResponse';
import { ROOT } from '../helpers/common';
import { describeIf } from '../helpers/tier';
import { Vm, vmUnavailableReason } from '../helpers/vm';

const d = describeIf(vmUnavailableReason());

const run = promisify(execFile);
const PIN_DIR = '/sys/fs/bpf/iofilter';

d('VM end-to-end: real EIO from should_fail_bio', () => {
  let vm: Vm;
  let client: IoFilterClient;
  let agentPid: number;
  let disk: string; // /dev/loopN, 64 MiB, no partitions
  let pdisk: string; // /dev/loopM with two 16 MiB partitions
  const part: { path: string; start: number }[] = [];

  /** One direct I/O of `count` sectors at `sector`: 'ok', 'EIO', or dd's complaint. */
  async function io(dev: string, op: 'read' | 'write', sector: number, count = 8): Promise<string> {
    const bytes = sector * 512;
    const cmd =
      op === 'write'
        ? `dd if=/dev/zero of=${dev} bs=${count * 512} count=1 seek=${bytes} oflag=direct,seek_bytes conv=notrunc status=none`
        : `dd if=${dev} of=/dev/null bs=${count * 512} count=1 skip=${bytes} iflag=direct,skip_bytes status=none`;
    const r = await vm.exec(cmd);
    if (r.code === 0) return 'ok';
    return /Input\/output error/.test(r.stderr) ? 'EIO' : r.stderr.trim();
  }

  /** fsync on the block device: an empty flush bio (REQ_OP_WRITE|REQ_PREFLUSH, size 0). */
  async function fsyncDev(dev: string): Promise<string> {
    const r = await vm.exec(`dd if=/dev/zero of=${dev} bs=4096 count=0 conv=fsync,notrunc status=none`);
    return r.code === 0 ? 'ok' : /Input\/output error/.test(r.stderr) ? 'EIO' : r.stderr.trim();
  }

  async function waitForAgent(): Promise<StatusResponse__Output> {
    const deadline = Date.now() + 90_000;
    for (;;) {
      try {
        return await client.status();
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`agent did not answer: ${(e as Error).message}\n${await vm.exec('tail -20 /dev/shm/iofilter-agent.log').then((r) => r.stdout)}`);
        await new Promise((r) => setTimeout(r, 300));
      }
    }
  }

  async function restartAgent(signal: 'KILL' | 'TERM' = 'KILL'): Promise<StatusResponse__Output> {
    await vm.exec(`kill -${signal} ${agentPid}; while kill -0 ${agentPid} 2>/dev/null; do sleep 0.1; done`);
    agentPid = await vm.startAgent(['--attach', 'none']);
    return waitForAgent();
  }

  async function attach(mode: 'fmod_ret' | 'kprobe') {
    await client.detach();
    const st = await client.attach(mode);
    expect(st).toMatchObject({ attached: true, mode: `MODE_${mode.toUpperCase()}`, hook: `${mode}/should_fail_bio` });
  }

  const filterOf = async (dev: string) => {
    const st = await client.status();
    return st.filters.find((f) => `/dev/${f.device?.name}` === dev);
  };

  beforeAll(async () => {
    vm = await Vm.boot();
    client = new IoFilterClient(vm.agentAddress, { timeoutMs: 60_000 });
    disk = await vm.sh('truncate -s 64M /dev/shm/d1.img && losetup -f --show --direct-io=on /dev/shm/d1.img || losetup -f --show /dev/shm/d1.img');
    pdisk = await vm.sh(
      `truncate -s 40M /dev/shm/d2.img && printf 'label: dos\\nsize=16MiB, type=83\\nsize=16MiB, type=83\\n' | sfdisk --quiet /dev/shm/d2.img && losetup -f --show -P /dev/shm/d2.img`,
    );
    for (const i of [1, 2]) {
      const name = `${path.basename(pdisk)}p${i}`;
      const start = Number(await vm.sh(`for t in $(seq 50); do [ -e /sys/class/block/${name}/start ] && break; sleep 0.1; done; cat /sys/class/block/${name}/start`));
      part.push({ path: `/dev/${name}`, start });
    }
    agentPid = await vm.startAgent(['--attach', 'none']);
    const st = await waitForAgent();
    expect(st.kernelRelease).toMatch(/^6\.1\./);
  }, 300_000);

  afterAll(async () => {
    client?.close();
    await vm?.shutdown();
  }, 60_000);

  test('the VM kernel supports every mode', async () => {
    const st = await client.status();
    expect(st.capabilities.map((c) => [c.mode, c.available])).toEqual([
      ['MODE_FMOD_RET', true],
      ['MODE_KPROBE', true],
      ['MODE_OBSERVE', true],
    ]);
  });

  test('fmod_ret: a whole-device write filter fails writes with EIO, reads succeed', async () => {
    await attach('fmod_ret');
    await client.setFilter({ device: disk, wholeDeviceOps: ['OP_WRITE'] });
    expect(await io(disk, 'write', 0)).toBe('EIO');
    expect(await io(disk, 'write', 100_000)).toBe('EIO');
    expect(await io(disk, 'read', 0)).toBe('ok');
    expect((await client.deleteFilter(disk)).existed).toBe(true);
    expect(await io(disk, 'write', 0)).toBe('ok');
  });

  test('fmod_ret: `iofilterctl set --read` over TCP fails reads, not writes', async () => {
    const cli = path.join(ROOT, 'dist', 'client', 'cli.js');
    const { stdout } = await run(process.execPath, [cli, '--host', vm.agentAddress, '--timeout', '60s', 'set', disk, '--read']);
    expect(stdout).toMatch(new RegExp(`^${vm.agentAddress}: set ${path.basename(disk)} .*whole device read`));
    expect(await io(disk, 'read', 64)).toBe('EIO');
    expect(await io(disk, 'write', 64)).toBe('ok');
    await run(process.execPath, [cli, '--host', vm.agentAddress, '--timeout', '60s', 'delete', disk]);
    expect(await io(disk, 'read', 64)).toBe('ok');
  });

  test('fmod_ret: ranges - inside, overlapping either edge, spanning fail; adjacent and outside succeed; counters agree', async () => {
    await client.setFilter({ device: disk, ranges: [{ start: 1000, end: 1999, ops: ['OP_WRITE'] }] });
    const seen = {
      inside: await io(disk, 'write', 1200),
      overlapStart: await io(disk, 'write', 996),
      overlapEnd: await io(disk, 'write', 1996),
      spanning: await io(disk, 'write', 992, 1024),
      adjacentBefore: await io(disk, 'write', 992),
      adjacentAfter: await io(disk, 'write', 2000),
      outside: await io(disk, 'write', 50_000),
      readInside: await io(disk, 'read', 1200),
    };
    expect(seen).toEqual({
      inside: 'EIO', overlapStart: 'EIO', overlapEnd: 'EIO', spanning: 'EIO',
      adjacentBefore: 'ok', adjacentAfter: 'ok', outside: 'ok', readInside: 'ok',
    });
    const f = await filterOf(disk);
    expect(f?.ranges.map((r) => [r.matched, r.failed])).toEqual([['4', '4']]);
    await client.deleteFilter(disk);
    expect(await io(disk, 'write', 1200)).toBe('ok');
  });

  test('kprobe: the same core cases', async () => {
    await attach('kprobe');
    await client.setFilter({ device: disk, ranges: [{ start: 1000, end: 1999, ops: ['OP_WRITE', 'OP_READ'] }] });
    expect(await io(disk, 'write', 1200)).toBe('EIO');
    expect(await io(disk, 'read', 996)).toBe('EIO');
    expect(await io(disk, 'write', 992, 1024)).toBe('EIO');
    expect(await io(disk, 'write', 2000)).toBe('ok');
    expect(await io(disk, 'read', 992)).toBe('ok');
    expect((await filterOf(disk))?.ranges[0].failed).toBe('3');
    await client.deleteFilter(disk);
    expect(await io(disk, 'write', 1200)).toBe('ok');
  });

  test('partitions: a partition filter fails I/O sent through the whole disk onto its sectors; the other partition is untouched', async () => {
    await attach('fmod_ret');
    const [p1, p2] = part;
    await client.setFilter({ device: p1.path, ranges: [{ start: 100, end: 199, ops: ['OP_WRITE'] }] });
    expect(await io(p1.path, 'write', 150)).toBe('EIO');
    expect(await io(pdisk, 'write', p1.start + 150)).toBe('EIO');
    expect(await io(pdisk, 'write', p1.start + 200)).toBe('ok');
    expect(await io(p2.path, 'write', 150)).toBe('ok');
    await client.deleteFilter(p1.path);
  });

  test('partitions: a whole-disk filter fails I/O sent through a partition', async () => {
    const [, p2] = part;
    await client.setFilter({ device: pdisk, ranges: [{ start: p2.start + 64, end: p2.start + 71, ops: ['OP_READ'] }] });
    expect(await io(p2.path, 'read', 60)).toBe('EIO');
    expect(await io(p2.path, 'read', 72)).toBe('ok');
    await client.deleteFilter(pdisk);
  });

  test('agent killed with SIGKILL: filters stay in force; a restarted agent adopts them; detach ends them all', async () => {
    await client.setFilter({ device: disk, wholeDeviceOps: ['OP_WRITE'] });
    await client.setFilter({ device: part[0].path, wholeDeviceOps: ['OP_READ'] });
    await io(disk, 'write', 8);
    await vm.exec(`kill -KILL ${agentPid}`);
    expect(await io(disk, 'write', 16)).toBe('EIO'); // no agent at all
    expect(await io(part[0].path, 'read', 0)).toBe('EIO');
    const st = await restartAgent();
    expect(st.state).toMatchObject({ attached: true, adopted: true, mode: 'MODE_FMOD_RET' });
    expect(st.filters).toHaveLength(2);
    expect(st.filters.find((f) => f.device?.name === path.basename(disk))?.ranges[0].failed).toBe('2');
    await client.detach();
    expect(await io(disk, 'write', 24)).toBe('ok');
    expect(await io(part[0].path, 'read', 0)).toBe('ok');
    expect(await vm.sh(`ls -A ${PIN_DIR} 2>/dev/null | wc -l`)).toBe('0');
  });

  test('TTL: a 3 s filter stops failing I/O after expiry while the agent is dead', async () => {
    await client.attach('fmod_ret');
    const set = Date.now();
    await client.setFilter({ device: disk, wholeDeviceOps: ['OP_WRITE'], ttlMs: 3000 });
    await vm.exec(`kill -KILL ${agentPid}`);
    expect(await io(disk, 'write', 0)).toBe('EIO');
    await new Promise((r) => setTimeout(r, Math.max(0, set + 3500 - Date.now())));
    expect(await io(disk, 'write', 0)).toBe('ok'); // the kernel program let it through: nobody removed it
    const st = await restartAgent();
    const f = st.filters.find((x) => x.device?.name === path.basename(disk));
    // adopted but inert; the agent reaps it within a second or two
    if (f) expect(f).toMatchObject({ hasExpiry: true, remainingMs: '0' });
  });

  test('max-failures: exactly the first K matching I/Os fail', async () => {
    await client.setFilter({ device: disk, wholeDeviceOps: ['OP_WRITE'], maxFailures: 3 });
    const seen = [];
    for (let i = 0; i < 6; i++) seen.push(await io(disk, 'write', i * 8));
    expect(seen).toEqual(['EIO', 'EIO', 'EIO', 'ok', 'ok', 'ok']);
    const f = await filterOf(disk);
    expect(f).toMatchObject({ maxFailures: '3', failures: '3' });
    expect(f?.ranges[0]).toMatchObject({ matched: '6', failed: '3' });
  });

  test('probability 0.5: about half of 120 writes fail, and Status counts exactly those', async () => {
    await client.setFilter({ device: disk, wholeDeviceOps: ['OP_WRITE'], probability: 0.5 });
    const r = await vm.exec(
      `n=0; for i in $(seq 120); do dd if=/dev/zero of=${disk} bs=4096 count=1 seek=$i oflag=direct conv=notrunc status=none 2>/dev/null || n=$((n+1)); done; echo $n`,
    );
    const failed = Number(r.stdout.trim());
    // binomial(120, 0.5): mean 60, sd 5.5; a bound of +-5 sd
    expect(failed).toBeGreaterThan(32);
    expect(failed).toBeLessThan(88);
    const f = await filterOf(disk);
    expect(f?.ranges[0]).toMatchObject({ matched: '120', failed: String(failed) });
    await client.deleteFilter(disk);
  });

  test('an empty flush (fsync of the device) neither crashes nor fails under a write-range filter; a flush filter fails it', async () => {
    await client.setFilter({ device: disk, ranges: [{ start: 0, end: 99, ops: ['OP_WRITE'] }] });
    expect(await fsyncDev(disk)).toBe('ok');
    expect(await io(disk, 'write', 0)).toBe('EIO'); // the filter is live
    await client.setFilter({ device: disk, ranges: [{ start: 0, end: 99, ops: ['OP_FLUSH'] }] });
    expect(await fsyncDev(disk)).toBe('EIO');
    expect(await io(disk, 'write', 0)).toBe('ok'); // a plain write carries no flush
    await client.deleteFilter(disk);
    expect(await fsyncDev(disk)).toBe('ok');
    expect((await vm.exec('dmesg | grep -cE "BUG:|Oops:|Kernel panic|general protection fault"')).stdout.trim()).toBe('0');
  });
});
