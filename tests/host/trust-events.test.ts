// The kernel's per-filter event rate limit with two CPUs submitting at once (issue 22,
// item 6), observe mode on this host's kernel through the native binding: no more events
// than the limit times the seconds of CLOCK_BOOTTIME (the program's windows) the writes
// span, and every matched I/O is either an event or counted as dropped. The races
// themselves are shown at high contention by tests/unit/rate.test.ts.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as native from '../../native';
import { createLoop, LoopDevice } from '../helpers/loop';
import { BUILT, describeIf, hostUnavailableReason } from '../helpers/tier';
import { until } from '../helpers/wait';

const d = describeIf(hostUnavailableReason(BUILT.addon) ?? (os.cpus().length < 2 ? 'needs 2 CPUs' : null));

/** CLOCK_BOOTTIME now, in ns: the clock the program's windows are whole seconds of. */
function boottimeNs(): bigint {
  const r = spawnSync('python3', ['-c', 'import time; print(time.clock_gettime_ns(time.CLOCK_BOOTTIME))'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python3 for CLOCK_BOOTTIME: ${r.stderr}`);
  return BigInt(r.stdout.trim());
}

/** One dd of `count` 512-byte direct writes on CPU `cpu`; resolves to its exit code. */
function writer(dev: string, cpu: number, count: number, seekSectors: number): Promise<number | null> {
  const p = spawn('taskset', ['-c', String(cpu), 'dd', 'if=/dev/zero', `of=${dev}`, 'oflag=direct', 'bs=512', `count=${count}`, `seek=${seekSectors}`, 'conv=notrunc', 'status=none'], { stdio: 'ignore' });
  return new Promise((r) => p.once('exit', r));
}

d('kernel event rate limit, two CPUs at once (observe mode)', () => {
  const pinDir = `/sys/fs/bpf/iofilter-trust-events-${process.pid}`;
  let lock: native.PinDirLock;
  let f: native.Filterer;
  let disk: LoopDevice;

  beforeAll(async () => {
    disk = createLoop(64);
    lock = native.lock(pinDir);
    f = await native.attach({ mode: 'observe', lock });
  });
  afterAll(async () => {
    try {
      f?.stopEvents();
      await f?.detach();
      lock?.release();
      fs.rmSync(pinDir, { recursive: true, force: true });
    } finally {
      disk?.detach();
    }
  });

  test('no more events than the limit in each second of CLOCK_BOOTTIME the writes span; events + drops = matched I/Os', async () => {
    const limit = 5;
    const dev = { major: disk.major, minor: disk.minor };
    const info = f.putFilter({ device: dev, disk: dev, offset: 0n, size: BigInt(disk.sizeSectors), ranges: [], wholeOps: ['write'], eventsPerSecond: limit });
    const events: native.KernelEvent[] = [];
    f.startEvents((batch) => events.push(...batch.filter((e) => e.filterId === info.id)));
    const perWriter = 20_000;
    const start = boottimeNs();
    const codes = await Promise.all([writer(disk.path, 0, perWriter, 0), writer(disk.path, 1, perWriter, perWriter)]);
    const end = boottimeNs();
    expect(codes).toEqual([0, 0]);
    const after = () => f.listFilters().find((x) => x.id === info.id)!;
    // the sentinel: once events and drops add up to every matched I/O, nothing is on its way
    await until(() => after().matchedIos === BigInt(2 * perWriter) && BigInt(events.length) + after().eventsDropped === after().matchedIos, 'events + drops = matched');
    f.stopEvents();
    // Every event was stamped between start and end, so in one of the whole seconds of
    // CLOCK_BOOTTIME they span: at most the limit in each. (Bucketing the events by
    // second would need their raw stamps; the binding converts them to wall-clock time
    // with an offset read per poll, which a preempted reader gets wrong by milliseconds.)
    const seconds = Number(end / 1_000_000_000n - start / 1_000_000_000n + 1n);
    console.log(`rate limit ${limit}/s, two CPUs: ${events.length} events, ${after().eventsDropped} dropped, over ${seconds} seconds of CLOCK_BOOTTIME`);
    expect(events.length).toBeLessThanOrEqual(limit * seconds);
    // the limit was reached, not just respected by a trickle
    expect(after().eventsDropped).toBeGreaterThan(0n);
    expect(events.length).toBeGreaterThanOrEqual(limit);
    f.deleteFilter({ device: dev });
  }, 120_000);
});
