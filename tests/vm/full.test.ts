// The full VM end-to-end suite, run on distro-6.1 in CI (IOFILTER_KERNEL, scripts/test): the agent in
// the guest, this process as the control host over real TCP, real EIO. Beyond the
// core subset (core.test.ts): the CLI, adoption after SIGKILL, churn on one disk
// while another must see no failure, 4096 ranges, cgroup scopes, live events, a dead
// hook caught by the self-test, and one agent per pin dir.
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type { WatchEvent__Output } from '../../proto/gen/iofilter/v1/WatchEvent';
import { ROOT } from '../helpers/common';
import { Guest, KERNEL, PIN_DIR } from '../helpers/guest';
import { jestTimeout, matrixCase, setRelease, writeMatrix } from '../helpers/matrix';
import { describeIf } from '../helpers/tier';
import { vmUnavailableReason } from '../helpers/vm';

const d = describeIf(vmUnavailableReason());

const run = promisify(execFile);

d(`VM full suite on Linux ${KERNEL}`, () => {
  let g: Guest;

  beforeAll(async () => {
    g = await Guest.boot();
    setRelease((await g.client.status()).kernelRelease);
    await g.attach('fmod_ret');
  }, 600_000);

  afterAll(async () => {
    writeMatrix(KERNEL, 'full');
    await g?.shutdown();
  }, 60_000);

  afterEach(async () => {
    await g.client.clearFilters().catch(() => undefined);
  });

  test('`iofilterctl set --read` over TCP fails reads, not writes', async () => {
    const cli = path.join(ROOT, 'dist', 'client', 'cli.js');
    const { stdout } = await run(process.execPath, [cli, '--host', g.vm.agentAddress, '--timeout', '60s', 'set', g.disk, '--read']);
    expect(stdout).toMatch(new RegExp(`^${g.vm.agentAddress}: set ${path.basename(g.disk)} .*whole device read`));
    expect(await g.io(g.disk, 'read', 64)).toBe('EIO');
    expect(await g.io(g.disk, 'write', 64)).toBe('ok');
    await run(process.execPath, [cli, '--host', g.vm.agentAddress, '--timeout', '60s', 'delete', g.disk]);
    expect(await g.io(g.disk, 'read', 64)).toBe('ok');
  });

  test('agent killed with SIGKILL: filters stay in force; a restarted agent adopts them; detach ends them all', matrixCase(KERNEL, 'fmod_ret', 'adoption after SIGKILL', async () => {
    await g.client.setFilter({ device: g.disk, wholeDeviceOps: ['OP_WRITE'] });
    await g.client.setFilter({ device: g.parts[0].path, wholeDeviceOps: ['OP_READ'] });
    await g.io(g.disk, 'write', 8);
    await g.killAgent('KILL');
    expect(await g.io(g.disk, 'write', 16)).toBe('EIO'); // no agent at all
    expect(await g.io(g.parts[0].path, 'read', 0)).toBe('EIO');
    const st = await g.startAgent(['--attach', 'none']);
    expect(st.state).toMatchObject({ attached: true, adopted: true, mode: 'MODE_FMOD_RET' });
    expect(st.filters).toHaveLength(2);
    expect(st.filters.find((f) => f.device?.name === path.basename(g.disk))?.ranges[0].failed).toBe('2');
    await g.client.detach();
    expect(await g.io(g.disk, 'write', 24)).toBe('ok');
    expect(await g.io(g.parts[0].path, 'read', 0)).toBe('ok');
    expect(await g.vm.sh(`ls -A ${PIN_DIR} 2>/dev/null | wc -l`)).toBe('0');
    await g.client.attach('fmod_ret');
  }));

  test('churn: hundreds of set/replace/delete calls on one disk with I/O running; another disk sees zero failures; none after the last delete', matrixCase(KERNEL, 'fmod_ret', 'churn isolation', async () => {
    const A = g.disk;
    const B = g.other;
    const C = g.pdisk; // filtered too, so the entries keep changing around B
    // B: 4 KiB direct writes, each followed by a flush, until told to stop; A: reads and writes
    await g.vm.sh(
      `rm -f /dev/shm/stop /dev/shm/b.log /dev/shm/a.log; ` +
        `(while [ ! -e /dev/shm/stop ]; do dd if=/dev/zero of=${B} bs=4096 count=1 seek=$((RANDOM % 4096)) oflag=direct conv=notrunc,fsync status=none 2>/dev/null; echo $? >> /dev/shm/b.log; done) >/dev/null 2>&1 & echo $! > /dev/shm/b.pid; ` +
        `(while [ ! -e /dev/shm/stop ]; do s=$(date +%s%N); dd if=/dev/zero of=${A} bs=4096 count=1 seek=$((RANDOM % 4096)) oflag=direct conv=notrunc status=none 2>/dev/null; echo "$s $?" >> /dev/shm/a.log; done) >/dev/null 2>&1 & echo $! > /dev/shm/a.pid`,
    );
    // every call answered as asked: each set a new filter (a new id), each delete removed one
    const ids: number[] = [];
    const removed: number[] = [];
    let deletedAt: bigint;
    try {
      for (let k = 0; k < 100; k++) {
        const start = (k * 97) % 30_000;
        ids.push((await g.client.setFilter({ device: A, ranges: [{ start, end: start + 5000, ops: ['OP_WRITE', 'OP_FLUSH'] }, { start: 40_000, end: 60_000, ops: ['OP_WRITE'] }] })).id);
        ids.push((await g.client.setFilter({ device: A, wholeDeviceOps: ['OP_WRITE', 'OP_READ', 'OP_FLUSH'], probability: 0.5 })).id); // replace
        ids.push((await g.client.setFilter({ device: C, ranges: [{ start: k, end: k + 100, ops: ['OP_WRITE', 'OP_FLUSH'] }] })).id);
        removed.push((await g.client.deleteFilter(k % 2 ? A : C)).removed);
      }
      // k = 99 deleted A's filter: only C's is left
      removed.push((await g.client.deleteFilter(A)).removed, (await g.client.deleteFilter(C)).removed);
      deletedAt = BigInt(await g.vm.sh('date +%s%N')); // guest time after the last DeleteFilter returned
      // let A's loop run on a little past the deletion
      await g.vm.sh(`n=$(wc -l < /dev/shm/a.log); while [ $(wc -l < /dev/shm/a.log) -lt $((n + 20)) ]; do sleep 0.1; done`, 300_000);
    } finally {
      // stop both loops, pass or fail, and wait until they are gone: they would break the next tests
      await g.vm.sh(`touch /dev/shm/stop; while kill -0 $(cat /dev/shm/a.pid) 2>/dev/null || kill -0 $(cat /dev/shm/b.pid) 2>/dev/null; do sleep 0.1; done`, 120_000);
    }
    expect(ids).toHaveLength(300);
    expect(ids.every((id, i) => i === 0 || id > ids[i - 1])).toBe(true);
    expect(removed).toEqual([...Array(100).fill(1), 0, 1]);
    const b = (await g.vm.sh('cat /dev/shm/b.log')).split('\n').filter(Boolean);
    expect(b.length).toBeGreaterThan(20);
    expect(b.filter((rc) => rc !== '0')).toEqual([]); // zero failed I/O on B
    const a = (await g.vm.sh('cat /dev/shm/a.log')).split('\n').filter(Boolean).map((l) => l.split(' '));
    expect(a.some(([, rc]) => rc !== '0')).toBe(true); // the filters on A did fail I/O meanwhile
    const afterDelete = a.filter(([s]) => BigInt(s) > deletedAt);
    expect(afterDelete.length).toBeGreaterThanOrEqual(20);
    expect(afterDelete.filter(([, rc]) => rc !== '0')).toEqual([]); // none after the last delete returned
    expect(await g.oopses()).toBe('');
  }, 600_000), jestTimeout(600_000));

  test('4096 ranges on one disk: real EIO exactly on them, exact counters on the ones hit', matrixCase(KERNEL, 'fmod_ret', '4096 ranges', async () => {
    // one-sector ranges every 16 sectors: [0, 0], [16, 16], ..., [65520, 65520]
    const ranges = Array.from({ length: 4096 }, (_, i) => ({ start: i * 16, end: i * 16, ops: ['OP_WRITE' as const] }));
    const f0 = await g.client.setFilter({ device: g.disk, ranges }, 'full');
    expect(f0.ranges).toHaveLength(4096);
    const seen = {
      first: await g.io(g.disk, 'write', 0, 1),
      last: await g.io(g.disk, 'write', 65520, 1),
      middle: await g.io(g.disk, 'write', 2048 * 16, 1),
      between: await g.io(g.disk, 'write', 2048 * 16 + 1, 8), // sectors 32769..32776: no range
      spanning3: await g.io(g.disk, 'write', 100 * 16 - 4, 40), // 1596..1635 covers 1600, 1616, 1632
      beyond: await g.io(g.disk, 'write', 65521, 8),
    };
    expect(seen).toEqual({ first: 'EIO', last: 'EIO', middle: 'EIO', between: 'ok', spanning3: 'EIO', beyond: 'ok' });
    const f = await g.filterOf(g.disk);
    const hit = f!.ranges.map((r, i) => (r.matched !== '0' ? `${i}:${r.matched}/${r.failed}` : '')).filter(Boolean);
    expect(hit).toEqual(['0:1/1', '100:1/1', '101:1/1', '102:1/1', '2048:1/1', '4095:1/1']);
  }));

  describe('cgroup scope (ext4, cgroup writeback)', () => {
    const mnt = '/dev/shm/cgmnt';
    const inCg = (cg: string, cmd: string) => `sh -c 'echo $$ > /sys/fs/cgroup${cg}/cgroup.procs && exec ${cmd}'`;
    const write = async (cg: string, file: string, flags: string) => {
      const r = await g.vm.exec(inCg(cg, `dd if=/dev/zero of=${mnt}/${file} bs=65536 count=4 ${flags} status=none`));
      return r.code === 0 ? 'ok' : /Input\/output error/.test(r.stderr) ? 'EIO' : r.stderr.trim();
    };

    beforeAll(async () => {
      await g.vm.sh(
        // a and b: siblings with tasks; p: a parent (no tasks of its own: cgroup v2 keeps
        // tasks in leaves once controllers are enabled below) with a child c
        `echo '+io +memory' > /sys/fs/cgroup/cgroup.subtree_control && mkdir -p /sys/fs/cgroup/a /sys/fs/cgroup/b /sys/fs/cgroup/p/c && ` +
          `echo '+io +memory' > /sys/fs/cgroup/p/cgroup.subtree_control && ` +
          `mkfs.ext4 -q -F ${g.other} && mkdir -p ${mnt} && mount -o errors=continue ${g.other} ${mnt}`,
      );
    }, 120_000);
    afterAll(async () => {
      await g.vm.exec(`umount ${mnt}`);
    });

    for (const mode of ['fmod_ret', 'kprobe'] as const) {
      test(`${mode}: direct writes from the cgroup fail; from a sibling and the root they succeed`, matrixCase(KERNEL, mode, 'cgroup, direct I/O', async () => {
        await g.attach(mode);
        const st = await g.client.setFilterResponse({ device: g.other, wholeDeviceOps: ['OP_WRITE'], cgroupPath: '/a' });
        expect(st.filter?.cgroup?.path).toBe('/a');
        expect(st.warnings).toEqual([]);
        expect(await write('/a', 'fa', 'oflag=direct')).toBe('EIO');
        expect(await write('/b', 'fb', 'oflag=direct')).toBe('ok');
        expect(await write('', 'fr', 'oflag=direct')).toBe('ok'); // the root cgroup
      }));
      test(`${mode}: a filter on a parent cgroup catches its child's I/O`, matrixCase(KERNEL, mode, 'cgroup, descendant', async () => {
        await g.attach(mode);
        await g.client.setFilter({ device: g.other, wholeDeviceOps: ['OP_WRITE'], cgroupPath: '/p' });
        expect(await write('/p/c', 'fc', 'oflag=direct')).toBe('EIO');
        expect(await write('/a', 'fa2', 'oflag=direct')).toBe('ok');
      }));
      test(`${mode}: pages dirtied by the cgroup and flushed by \`sync\` from the root fail (writeback is charged to the cgroup)`, matrixCase(KERNEL, mode, 'cgroup, writeback', async () => {
        await g.attach(mode);
        const f = await g.client.setFilter({ device: g.other, wholeDeviceOps: ['OP_WRITE'], cgroupPath: '/a' });
        expect(await write('/a', `wa-${mode}`, '')).toBe('ok'); // dirty pages only: no I/O from /a's task
        expect((await g.filterOf(g.other))?.failedIos).toBe('0');
        await g.vm.exec('sync'); // the root cgroup's task; the flusher does the I/O
        const after = (await g.client.status()).filters.find((x) => x.id === f.id)!;
        expect(Number(after.failedIos)).toBeGreaterThan(0); // ext4 writes the 256 KiB back in as few bios as it can: 1 here
      }));
      test(`${mode}: pages dirtied by a sibling and fsynced from the cgroup succeed (charged to the sibling, not to the caller)`, matrixCase(KERNEL, mode, 'cgroup, writeback of another', async () => {
        await g.attach(mode);
        await g.client.setFilter({ device: g.other, wholeDeviceOps: ['OP_WRITE'], cgroupPath: '/a' });
        expect(await write('/b', `wb-${mode}`, '')).toBe('ok');
        // /a's task writes the pages back: fsync of the file, writing nothing itself
        const r = await g.vm.exec(inCg('/a', `dd if=/dev/null of=${mnt}/wb-${mode} conv=notrunc,fsync status=none`));
        expect(r).toMatchObject({ code: 0, stderr: '' });
        expect((await g.filterOf(g.other))?.failedIos).toBe('0');
        expect(await write('/a', `wa2-${mode}`, 'oflag=direct')).toBe('EIO'); // the filter is live
      }));
    }
    test('observe counts the same: only the I/O of the cgroup\'s subtree', matrixCase(KERNEL, 'observe', 'cgroup counted', async () => {
      await g.attach('observe');
      await g.client.setFilter({ device: g.other, wholeDeviceOps: ['OP_WRITE'], cgroupPath: '/p' });
      for (const [cg, file] of [['/p/c', 'oc'], ['/a', 'oa'], ['/b', 'ob'], ['', 'or']]) expect(await write(cg, file, 'oflag=direct')).toBe('ok');
      const f = await g.filterOf(g.other);
      expect(f?.matchedIos).toBe('4'); // the 4 direct 64 KiB writes from /p/c, none of the others
      await g.attach('fmod_ret');
    }));
  });

  test('events: each real EIO arrives live with its sector, op, outcome, pid and comm', matrixCase(KERNEL, 'fmod_ret', 'events', async () => {
    await g.attach('fmod_ret');
    const f = await g.client.setFilter({ device: g.disk, ranges: [{ start: 5000, end: 5999, ops: ['OP_WRITE'] }] });
    const events: WatchEvent__Output[] = [];
    const stream = g.client.watch({});
    stream.on('data', (e: WatchEvent__Output) => events.push(e));
    stream.on('error', () => undefined);
    await new Promise((r) => stream.once('metadata', r));
    expect(await g.io(g.disk, 'write', 5100)).toBe('EIO');
    expect(await g.io(g.disk, 'write', 100)).toBe('ok'); // outside: no event
    expect(await g.io(g.disk, 'read', 5100)).toBe('ok'); // wrong op: no event
    // a sentinel failure after them: events arrive in order, so once its event is here
    // any event of the two I/Os above would have arrived before it
    expect(await g.io(g.disk, 'write', 5800)).toBe('EIO');
    const deadline = Date.now() + 60_000;
    while (!events.some((e) => e.io?.sector === '5800') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    stream.cancel();
    const all = events.filter((e) => e.io).map((e) => e.io!);
    expect(all.map((e) => e.sector)).toEqual(['5100', '5800']);
    const io = all.slice(0, 1);
    expect(io[0]).toMatchObject({
      sector: '5100', deviceSector: '5100', nrSectors: 8, ops: ['OP_WRITE'], outcome: 'OUTCOME_FAILED', filterId: f.id, rangeIndex: 0, comm: 'dd',
      device: expect.objectContaining({ name: path.basename(g.disk) }),
    });
    expect(io[0].pid).toBeGreaterThan(1);
  }));

  test('one agent per pin dir: a second agent is refused at once; the first one\'s filters keep failing I/O', matrixCase(KERNEL, 'fmod_ret', 'one agent per pin dir', async () => {
    await g.client.setFilter({ device: g.disk, wholeDeviceOps: ['OP_WRITE'] });
    const r = await g.vm.exec(`node dist/agent/main.js --listen 127.0.0.1:50052 --attach auto; echo "exit=$?"`, 120_000);
    expect(r.stdout + r.stderr).toMatch(new RegExp(`pin dir ${PIN_DIR} is in use by pid ${g.agentPid}`));
    expect(r.stdout).toMatch(/exit=[1-9]/);
    expect(await g.io(g.disk, 'write', 0)).toBe('EIO');
    expect((await g.client.status()).state?.attached).toBe(true);
  }, 200_000), jestTimeout(200_000));

  test('a hook that attaches but never fires is caught by the self-test and reported unavailable', matrixCase(KERNEL, 'auto', 'dead hook self-test', async () => {
    await g.client.detach();
    await g.killAgent('TERM');
    await g.startAgent(['--attach', 'auto'], 'IOFILTER_TEST_DEAD_HOOK=1');
    const st = await g.client.status();
    expect(st.state?.attached).toBe(false);
    const caps = Object.fromEntries(st.capabilities.map((c) => [c.mode, c]));
    expect(caps.MODE_FMOD_RET).toMatchObject({ available: false, reason: expect.stringMatching(/hook attached but did not fire/) });
    expect(st.attachError).toMatch(/hook attached but did not fire/);
    expect(await g.vm.sh(`ls -A ${PIN_DIR} 2>/dev/null | wc -l`)).toBe('0'); // nothing left pinned
    await g.killAgent('TERM');
    await g.startAgent(['--attach', 'fmod_ret']);
  }));

  test('no scratch device can be made (/dev, /run, /tmp nodev): observe drops fentry for the tracepoint; fmod_ret is kept and said UNPROVEN, never passed', matrixCase(KERNEL, 'auto', 'self-test cannot run', async () => {
    // the agent in a mount namespace where no device node can be opened: the self-test's
    // real decision code in attach.cc, not a test switch
    const ns = `unshare -m --propagation private sh -c 'for m in /dev /run /tmp; do mount --bind $m $m && mount -o remount,bind,nodev $m || exit 1; done; exec "$@"' sh`; // nodev in place: a checkout under /tmp stays visible
    const disk = await g.vm.sh(`cat /sys/class/block/${path.basename(g.disk)}/dev`); // no /dev paths in there
    await g.client.detach(); // else the next agent adopts the pins
    await g.killAgent('TERM');
    let st = await g.startAgent(['--attach', 'observe'], ns);
    expect(st.state).toMatchObject({ attached: true, mode: 'MODE_OBSERVE', hook: 'tp_btf/block_bio_queue' });
    expect(st.state?.selfTest?.passed).toBe(false);
    expect(st.state?.selfTest?.detail).toMatch(/^not run: no scratch loop device .*: kept, UNPROVEN: tp_btf\/block_bio_queue is the block layer's tracepoint/);
    await g.client.setFilter({ device: disk, wholeDeviceOps: ['OP_WRITE'] });
    for (const sector of [0, 8, 16]) expect(await g.io(g.disk, 'write', sector)).toBe('ok');
    expect((await g.client.status()).filters[0].matchedIos).toBe('3'); // the tracepoint sees every write

    // the same agent attaching again (the Attach call, no restart): an enforcing mode
    await g.client.detach();
    await g.client.attach('fmod_ret');
    st = await g.client.status();
    expect(st.state).toMatchObject({ attached: true, mode: 'MODE_FMOD_RET', hook: 'fmod_ret/should_fail_bio' });
    expect(st.state?.selfTest?.passed).toBe(false);
    expect(st.state?.selfTest?.detail).toMatch(/^not run: .*: kept, UNPROVEN: nothing has shown that fmod_ret\/should_fail_bio sees every bio/);
    await g.client.setFilter({ device: disk, wholeDeviceOps: ['OP_WRITE'] });
    expect(await g.io(g.disk, 'write', 0)).toBe('EIO'); // it does work on this kernel: unproven is what Status can say
    // the last test: the agent stays in its namespace until the guest shuts down
  }, 300_000), jestTimeout(300_000));
});
