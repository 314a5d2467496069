// Counting dm filters in the VM (IOFILTER_KERNEL, 6.1 by default): the agent attached
// in observe mode, a two-segment dm-linear device over two loop devices, dm filters set
// on it (auto picks dm: observe fails nothing). Their companion observe filters count
// what the table fails: direct I/O inside and outside an error range gives exact
// matched/failed counters on the dm filter, the companion is never listed as a bpf
// filter of its own, Watch events carry the dm filter's id, the flakey write filter
// counts the device's flushes it fails, and delete and TTL leave no companion in the
// bpf maps (a left-over one would be listed: no dm filter claims it any more).
import { Guest } from '../helpers/guest';
import { describeIf } from '../helpers/tier';
import { vmUnavailableReason } from '../helpers/vm';
import { until } from '../helpers/wait';
import { watchStream } from '../helpers/watch';

const d = describeIf(vmUnavailableReason());
jest.setTimeout(900_000); // TCG on a loaded machine

const STATE = '/dev/shm/iofilter-state';
const DM = 'DM_DISABLE_UDEV=1 dmsetup --noudevsync';
const NAME = 'iof-cnt';
const LV = `/dev/mapper/${NAME}`;
const SEG = 32768;
const RW = ['OP_READ', 'OP_WRITE', 'OP_DISCARD', 'OP_WRITE_ZEROES'] as const;
const W = ['OP_WRITE', 'OP_FLUSH', 'OP_DISCARD', 'OP_WRITE_ZEROES'] as const;

d('VM dm filters counted under an observe attach', () => {
  let g: Guest;
  let original = '';
  const table = () => g.vm.sh(`${DM} table ${NAME}`);

  beforeAll(async () => {
    g = await Guest.boot(['--attach', 'observe', '--state-dir', STATE]);
    const [a, b] = [await g.vm.sh(`cat /sys/class/block/${g.disk.slice(5)}/dev`), await g.vm.sh(`cat /sys/class/block/${g.other.slice(5)}/dev`)];
    await g.vm.sh(`printf '0 ${SEG} linear ${a} 2048\\n${SEG} ${SEG} linear ${b} 0\\n' | ${DM} create ${NAME}`);
    original = await table();
  }, 900_000);

  afterAll(async () => {
    await g?.shutdown();
  }, 60_000);

  afterEach(async () => {
    const t = await table();
    if (t !== original) await g.client.clearFilters().catch(() => undefined);
    expect(t).toBe(original);
    expect((await g.client.status()).filters).toEqual([]); // no dm filter, and no companion left in the bpf maps
  });

  test('observe attached and self-tested; dm serves the filters (auto)', async () => {
    const st = await g.client.status();
    expect(st.state).toMatchObject({ attached: true, mode: 'MODE_OBSERVE', selfTest: { passed: true } });
    process.stderr.write(`observe hook on ${st.kernelRelease}: ${st.state?.hook}\n`);
  });

  test('error range: N failed reads and M failed writes counted exactly, I/O outside not; one filter listed; events carry the dm id; delete ends both', async () => {
    const f = await g.client.setFilter({ device: LV, ranges: [{ start: 40000, end: 40099, ops: [...RW] }], ttlMs: 600_000 });
    expect(f).toMatchObject({ backend: 'BACKEND_DM', notCounted: '', matchedIos: '0', failedIos: '0' });
    expect(await table()).toMatch(/^40000 100 error\s*$/m);
    const w = watchStream(g.client, { filterId: f.id });
    await w.accepted;
    // inside: 5 reads, 2 writes, each wholly in the range (a bio across the range's edge is split by dm)
    for (const s of [40000, 40008, 40050, 40088, 40092]) expect(await g.io(LV, 'read', s, 8)).toBe('EIO');
    for (const s of [40010, 40090]) expect(await g.io(LV, 'write', s, 8)).toBe('EIO');
    // outside, either edge and elsewhere: succeed, not counted
    for (const s of [39992, 40100, 100, 2 * SEG - 8]) expect(await g.io(LV, 'read', s, 8)).toBe('ok');
    expect(await g.io(LV, 'write', 40100, 8)).toBe('ok');
    expect(await g.fsync(LV)).toBe('ok'); // the error target takes no flushes, and the filter has no flush op
    const st = await g.client.status();
    expect(st.filters).toHaveLength(1); // the companion is not listed as a bpf filter
    expect(st.filters[0]).toMatchObject({ id: f.id, backend: 'BACKEND_DM', notCounted: '', matchedIos: '7', failedIos: '7', ranges: [{ start: '40000', end: '40099', matched: '7', failed: '7' }] });
    await until(() => w.ios.length >= 7 || null, '7 events', 60_000, 50);
    expect(w.ios.map((e) => [e.filterId, e.outcome, e.device?.name, e.ops])).toEqual(
      [...Array(5).fill(['OP_READ']), ...Array(2).fill(['OP_WRITE'])].map((ops) => [f.id, 'OUTCOME_FAILED', expect.stringMatching(/^dm-\d+$/), ops]),
    );
    expect(w.ios.map((e) => Number(e.deviceSector))).toEqual([40000, 40008, 40050, 40088, 40092, 40010, 40090]);
    w.call.cancel();
    expect((await g.client.deleteFilter(LV)).existed).toBe(true);
    // after delete: the range works and nothing counts it (the afterEach checks no filter of any backend is left)
    expect(await g.io(LV, 'read', 40000, 8)).toBe('ok');
  });

  test('flakey write filter: writes in range and every flush to the device counted as failed; reads pass uncounted', async () => {
    const f = await g.client.setFilter({ device: LV, ranges: [{ start: 1000, end: 1999, ops: [...W] }], ttlMs: 600_000 });
    expect(await table()).toMatch(/^1000 1000 flakey \S+ 3048 0 1 1 error_writes\s*$/m);
    expect(await g.io(LV, 'write', 1000, 8)).toBe('EIO');
    expect(await g.io(LV, 'write', 1992, 8)).toBe('EIO');
    expect(await g.io(LV, 'read', 1000, 8)).toBe('ok');
    expect(await g.io(LV, 'write', 2000, 8)).toBe('ok');
    expect(await g.fsync(LV)).toBe('EIO'); // an empty flush: flakey takes it and fails it
    const st = await g.client.status();
    expect(st.filters).toHaveLength(1);
    expect(st.filters[0]).toMatchObject({ id: f.id, notCounted: '', matchedIos: '3', failedIos: '3', ranges: [{ matched: '3', failed: '3' }] });
    expect((await g.client.deleteFilter({ id: f.id })).existed).toBe(true);
    expect(await g.fsync(LV)).toBe('ok');
  });

  test('TTL: the table and its counter end together; nothing left in the bpf maps', async () => {
    const t0 = await g.uptimeMs();
    const f = await g.client.setFilter({ device: LV, ranges: [{ start: 8000, end: 8099, ops: [...RW] }], ttlMs: 20_000 });
    expect(await g.io(LV, 'read', 8000, 8)).toBe('EIO');
    expect(await g.io(LV, 'read', 8040, 8)).toBe('EIO');
    expect((await g.client.status()).filters).toMatchObject([{ id: f.id, matchedIos: '2', failedIos: '2' }]);
    await until(async () => ((await g.client.status()).filters.length === 0 ? true : null), 'the dm filter to expire', 300_000, 500);
    expect(await g.uptimeMs()).toBeGreaterThanOrEqual(t0 + 20_000);
    expect(await g.io(LV, 'read', 8000, 8)).toBe('ok');
  });

  test('TTL with the agent SIGKILLed: the watchdog restores the table; the counter ended in the kernel, and the next agent finds nothing left', async () => {
    await g.client.setFilter({ device: LV, ranges: [{ start: 12000, end: 12099, ops: [...RW] }], ttlMs: 20_000 });
    expect(await g.io(LV, 'read', 12000, 8)).toBe('EIO');
    await g.killAgent('KILL');
    await until(async () => ((await table()) === original ? true : null), 'the watchdog to restore the table', 300_000, 500);
    expect(await g.io(LV, 'read', 12000, 8)).toBe('ok');
    // the pins (program, maps, the expired counter) outlived the agent; the new one adopts them
    const st = await g.startAgent(['--attach', 'observe', '--state-dir', STATE]);
    expect(st.state).toMatchObject({ attached: true, adopted: true, mode: 'MODE_OBSERVE' });
    expect(st.filters).toEqual([]);
  });
});
