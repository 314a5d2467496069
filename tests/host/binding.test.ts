// Host-kernel tests of the native binding: observe mode on real loop devices (this
// host's kernel cannot fail I/O; it can count what would fail, exactly).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as native from '../../native';
import { ROOT } from '../helpers/common';
import { createLoop, directIo, LoopDevice } from '../helpers/loop';
import { BUILT, describeIf, hostUnavailableReason } from '../helpers/tier';
import { until } from '../helpers/wait';

const d = describeIf(hostUnavailableReason(BUILT.addon));

// the addon's typed face, as another process loads it (built by npm run build:ts)
const NATIVE = path.join(ROOT, 'dist', 'native', 'index.js');
const pinDir = `/sys/fs/bpf/iofilter-test-${process.pid}`;
const dev = (l: { major: number; minor: number }) => ({ major: l.major, minor: l.minor });
/** The unscoped filter of a device. */
const key = (l: { major: number; minor: number }) => ({ device: dev(l) });
const counts = (f: native.FilterInfo | null) => f!.ranges.map((r) => `${r.matched}/${r.failed}`);

d('native binding on the host kernel (observe mode)', () => {
  let f: native.Filterer;
  let lock: native.PinDirLock;
  let disk: LoopDevice; // unpartitioned, 64 MiB
  let pdisk: LoopDevice; // two partitions of 16 MiB

  beforeAll(async () => {
    disk = createLoop(64);
    pdisk = createLoop(40, [16, 16]);
    lock = native.lock(pinDir);
    f = await native.attach({ mode: 'observe', lock });
  });
  afterAll(async () => {
    try {
      await (await native.adopt(lock))?.detach();
      lock.release();
      fs.rmSync(pinDir, { recursive: true, force: true });
    } finally {
      disk?.detach();
      pdisk?.detach();
    }
  });
  afterEach(() => {
    for (const x of f.listFilters()) f.deleteFilter({ device: x.device, allScopes: true });
  });

  test('probe reports what this kernel can do, with reasons', async () => {
    const caps = await native.probe();
    expect(caps.kernelRelease).toBe(execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim());
    expect(caps.btf).toBe(true);
    const observe = caps.modes.find((m) => m.mode === 'observe')!;
    expect(observe.available).toBe(true);
    for (const m of caps.modes.filter((m) => !m.available)) expect(m.reason).toMatch(/\w{10}/);
    console.log('capabilities:', JSON.stringify(caps, null, 1));
  });

  test('attach state names the mode, hook and ids, and the pins exist', () => {
    expect(f.state.mode).toBe('observe');
    expect(f.state.adopted).toBe(false);
    expect(f.state.hook).toMatch(/block_bio_queue|should_fail_bio/);
    expect(fs.readdirSync(pinDir).sort()).toEqual(['counters', 'entries', 'events', 'fstats', 'index', `link_${f.state.hook.startsWith('tp_btf') ? 'iofilter_observe_tp' : 'iofilter_observe_fentry'}`, 'meta', 'nodes', 'ranges', 'seen', 'state'].sort());
    const progs = JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show', 'id', String(f.state.progIds[0])], { encoding: 'utf8' }));
    expect(progs.name).toMatch(/^iofilter_obse/);
    const link = JSON.parse(execFileSync('bpftool', ['-j', 'link', 'show', 'id', String(f.state.linkIds[0])], { encoding: 'utf8' }));
    expect(link.prog_id).toBe(f.state.progIds[0]);
  });

  test('counters show exactly which direct I/Os would fail', () => {
    f.putFilter({ device: dev(disk), disk: dev(disk), offset: 0n, size: BigInt(disk.sizeSectors),
      ranges: [{ start: 1000n, end: 1999n, ops: ['write'] }, { start: 5000n, end: 5007n, ops: ['read'] }] });
    // [1000,1999] write
    expect(directIo(disk.path, 'write', 1200, 8).ok).toBe(true); // inside
    expect(directIo(disk.path, 'write', 996, 8).ok).toBe(true); // overlaps start
    expect(directIo(disk.path, 'write', 1996, 8).ok).toBe(true); // overlaps end
    expect(directIo(disk.path, 'write', 2000, 8).ok).toBe(true); // adjacent after: no
    expect(directIo(disk.path, 'write', 992, 8).ok).toBe(true); // adjacent before: no
    expect(directIo(disk.path, 'read', 1200, 8).ok).toBe(true); // wrong op: no
    // [5000,5007] read
    expect(directIo(disk.path, 'read', 4992, 32).ok).toBe(true); // spans the whole range
    expect(directIo(disk.path, 'write', 5000, 8).ok).toBe(true); // wrong op: no
    expect(counts(f.getFilter(key(disk)))).toEqual(['3/3', '1/1']);
  });

  test('4096 ranges on one device: I/O at chosen sectors counts exactly on the ranges it overlaps, none between them', () => {
    expect(native.limits().maxRangesPerFilter).toBe(4096);
    // range i: sectors 32i..32i+7, over the whole 64 MiB disk
    const ranges = Array.from({ length: 4096 }, (_, i) => ({ start: BigInt(32 * i), end: BigInt(32 * i + 7), ops: ['write'] as native.Op[] }));
    // writes only: udev's probe reads the disk after a writer closes it
    f.putFilter({ device: dev(disk), disk: dev(disk), offset: 0n, size: BigInt(disk.sizeSectors), ranges });
    for (const i of [0, 1, 2048, 4095]) expect(directIo(disk.path, 'write', 32 * i, 8).ok).toBe(true); // exactly range i
    expect(directIo(disk.path, 'write', 32 * 3000 + 2, 8).ok).toBe(true); // the tail of range 3000 and the gap after it
    expect(directIo(disk.path, 'write', 32 * 10 + 4, 64).ok).toBe(true); // one I/O over ranges 10, 11 and 12
    for (const i of [0, 100, 4095]) expect(directIo(disk.path, 'write', 32 * i + 8, 24).ok).toBe(true); // gaps: nothing
    const got = f.getFilter(key(disk))!;
    expect(got.ranges).toHaveLength(4096);
    expect(got.ranges.map((r) => [r.start, r.end])).toEqual(ranges.map((r) => [r.start, r.end]));
    const hit = [0, 1, 10, 11, 12, 2048, 3000, 4095];
    expect(got.ranges.flatMap((r, i) => (r.matched || r.failed ? [`${i}:${r.matched}/${r.failed}`] : []))).toEqual(hit.map((i) => `${i}:1/1`));
    expect([got.matchedIos, got.failedIos]).toEqual([6n, 6n]);
  });

  test('partition filter: I/O through the whole disk onto its sectors counts, other partition does not', () => {
    const [p1, p2] = pdisk.partitions;
    f.putFilter({ device: dev(p1), disk: dev(pdisk), offset: BigInt(p1.start), size: BigInt(p1.size),
      ranges: [{ start: 100n, end: 199n, ops: ['write', 'read'] }] });
    expect(directIo(p1.path, 'write', 150, 8).ok).toBe(true); // through the partition: yes
    expect(directIo(pdisk.path, 'read', p1.start + 100, 8).ok).toBe(true); // through the disk: yes
    expect(directIo(pdisk.path, 'read', p1.start + 200, 8).ok).toBe(true); // disk, past the range: no
    expect(directIo(p2.path, 'write', 150, 8).ok).toBe(true); // other partition, same relative sector: no
    expect(counts(f.getFilter(key(p1)))).toEqual(['2/2']);
  });

  test('whole-disk filter: I/O through a partition onto its sectors counts', () => {
    const [, p2] = pdisk.partitions;
    f.putFilter({ device: dev(pdisk), disk: dev(pdisk), offset: 0n, size: BigInt(pdisk.sizeSectors),
      ranges: [{ start: BigInt(p2.start + 64), end: BigInt(p2.start + 71), ops: ['read'] }] });
    expect(directIo(p2.path, 'read', 60, 8).ok).toBe(true); // p2 [60,67] -> disk overlaps: yes
    expect(directIo(p2.path, 'read', 72, 8).ok).toBe(true); // p2 [72,79]: adjacent after: no
    expect(counts(f.getFilter(key(pdisk)))).toEqual(['1/1']);
  });

  test('no ranges = the whole device with the given ops', () => {
    const [, p2] = pdisk.partitions;
    const info = f.putFilter({ device: dev(p2), disk: dev(pdisk), offset: BigInt(p2.start), size: BigInt(p2.size), ranges: [], wholeOps: ['write'] });
    expect(info.whole).toBe(true);
    expect(info.ranges).toEqual([{ start: 0n, end: BigInt(p2.size - 1), ops: ['write'], matched: 0n, failed: 0n }]);
    directIo(p2.path, 'write', p2.size - 8, 8);
    directIo(pdisk.path, 'write', p2.start - 8, 8); // just before p2 through the disk: no
    expect(counts(f.getFilter(key(p2)))).toEqual(['1/1']);
  });

  test('max failures: exactly K would fail, the rest pass', () => {
    f.putFilter({ device: dev(disk), disk: dev(disk), offset: 0n, ranges: [{ start: 0n, end: 99n, ops: ['write'] }], maxFailures: 3n });
    for (let i = 0; i < 7; i++) directIo(disk.path, 'write', 0, 8);
    const info = f.getFilter(key(disk))!;
    expect(counts(info)).toEqual(['7/3']);
    expect(info.failures).toBe(3n);
  });

  test('probability: roughly 1 in 4 of 400 I/Os would fail', () => {
    f.putFilter({ device: dev(disk), disk: dev(disk), offset: 0n, ranges: [{ start: 0n, end: 99n, ops: ['read'] }], probability: 0.25 });
    for (let i = 0; i < 400; i++) directIo(disk.path, 'read', 0, 8);
    const [r] = f.getFilter(key(disk))!.ranges;
    expect(r.matched).toBe(400n);
    // binomial(400, 0.25): mean 100, sd 8.7; +-5 sd
    expect(Number(r.failed)).toBeGreaterThan(56);
    expect(Number(r.failed)).toBeLessThan(144);
  });

  test('expiry is enforced by the program: after the TTL nothing counts; reapExpired removes it', async () => {
    // One I/O must land while the filter is live. The TTL that allows it is found by
    // trying, not assumed: a try whose filter ran out before its I/O is repeated with
    // a 4x longer TTL (remainingMs and the program read the same clock).
    const put = (ttlMs: number) => f.putFilter({ device: dev(disk), disk: dev(disk), offset: 0n, ranges: [{ start: 0n, end: 99n, ops: ['write'] }], ttlMs });
    let ttlMs = 300;
    put(ttlMs);
    directIo(disk.path, 'write', 0, 8);
    while (f.getFilter(key(disk))!.remainingMs === 0) {
      if (ttlMs > 60_000) throw new Error('one dd took over a minute: cannot test expiry on this machine');
      put((ttlMs *= 4)); // a replaced filter starts with zeroed counters
      directIo(disk.path, 'write', 0, 8);
    }
    expect(counts(f.getFilter(key(disk)))).toEqual(['1/1']); // live: counted
    await until(() => f.getFilter(key(disk))!.remainingMs === 0, 'the TTL to run out', ttlMs + 60_000, 20);
    // the program's clock may be one tick behind (at most 10 ms, HZ >= 100): see iof_now_ns
    await new Promise((r) => setTimeout(r, 20));
    directIo(disk.path, 'write', 0, 8);
    const info = f.getFilter(key(disk))!;
    expect(counts(info)).toEqual(['1/1']); // expired: the program no longer counts
    expect(info.remainingMs).toBe(0);
    expect(f.reapExpired()).toBe(1);
    expect(f.getFilter(key(disk))).toBeNull();
  });

  test('replacing a partition filter keeps the counters of the other filters on the disk', () => {
    const [p1, p2] = pdisk.partitions;
    const spec = (p: typeof p1, ops: native.Op[]) => ({ device: dev(p), disk: dev(pdisk), offset: BigInt(p.start), size: BigInt(p.size), ranges: [{ start: 0n, end: 99n, ops }] });
    f.putFilter(spec(p1, ['write']));
    f.putFilter(spec(p2, ['write']));
    directIo(p1.path, 'write', 0, 8);
    f.putFilter(spec(p2, ['read'])); // replace p2's filter
    expect(counts(f.getFilter(key(p1)))).toEqual(['1/1']);
    expect(f.getFilter(key(p2))!.ranges[0].ops).toEqual(['read']);
  });

  test('bad input throws and changes nothing', () => {
    f.putFilter({ device: dev(disk), disk: dev(disk), offset: 0n, ranges: [{ start: 0n, end: 9n, ops: ['write'] }] });
    const before = JSON.stringify(f.listFilters(), (_k, v) => (typeof v === 'bigint' ? String(v) : v));
    const base = { device: dev(disk), disk: dev(disk), offset: 0n };
    const bad: [string, unknown, RegExp, ErrorConstructor][] = [
      ['start > end', { ...base, ranges: [{ start: 9n, end: 1n, ops: ['read'] }] }, /range 0 \[9, 1\]: start > end/, RangeError],
      ['too many ranges', { ...base, ranges: Array.from({ length: 4097 }, (_, i) => ({ start: BigInt(i * 10), end: BigInt(i * 10 + 1), ops: ['read'] })) }, /too many ranges: 4097, limit 4096/, RangeError],
      ['9 ranges over one sector', { ...base, ranges: Array.from({ length: 9 }, () => ({ start: 0n, end: 9n, ops: ['read'] })) }, /more than 8 ranges would cover sector 0/, RangeError],
      ['unknown op', { ...base, ranges: [{ start: 0n, end: 1n, ops: ['frobnicate'] }] }, /unknown op 'frobnicate'/, RangeError],
      ['no op', { ...base, ranges: [{ start: 0n, end: 1n, ops: [] }] }, /selects no operation/, RangeError],
      ['cgroup id 0', { ...base, ranges: [], size: 100n, cgroup: { id: 0n, level: 1 } }, /cgroup.id must not be 0/, RangeError],
      ['probability 0', { ...base, ranges: [], size: 100n, probability: 0 }, /probability/, RangeError],
      ['probability 1.5', { ...base, ranges: [], size: 100n, probability: 1.5 }, /probability/, RangeError],
      ['probability NaN', { ...base, ranges: [], size: 100n, probability: NaN }, /probability/, RangeError],
      ['negative sector', { ...base, ranges: [{ start: -1n, end: 1n, ops: ['read'] }] }, /negative/, RangeError],
      ['sector > 2^64-1', { ...base, ranges: [{ start: 0n, end: 1n << 64n, ops: ['read'] }] }, /2\^64-1/, RangeError],
      ['beyond the device', { ...base, size: 100n, ranges: [{ start: 0n, end: 100n, ops: ['read'] }] }, /beyond the device/, RangeError],
      ['no ranges, no size', { ...base, ranges: [] }, /whole device/, RangeError],
      ['ranges not an array', { ...base, ranges: 'all' }, /ranges must be an array/, TypeError],
      ['not an object', 42, /must be an object/, TypeError],
    ];
    for (const [name, spec, msg, type] of bad) {
      let err: unknown;
      try {
        f.putFilter(spec as native.FilterSpec);
      } catch (e) {
        err = e;
      }
      expect({ name, type: (err as Error)?.constructor?.name }).toEqual({ name, type: type.name });
      expect((err as Error).message).toMatch(msg);
    }
    expect(JSON.stringify(f.listFilters(), (_k, v) => (typeof v === 'bigint' ? String(v) : v))).toBe(before);
  });

  test('a second process adopts the pins and sees the same filters and counters; detach leaves nothing', async () => {
    f.putFilter({ device: dev(disk), disk: dev(disk), offset: 0n, ranges: [{ start: 0n, end: 99n, ops: ['write'] }] });
    directIo(disk.path, 'write', 8, 8);
    const script = `
      const a = require(${JSON.stringify(NATIVE)});
      const lock = a.lock(${JSON.stringify(pinDir)});
      a.adopt(lock).then((f) => {
        const out = { state: f.state, filters: f.listFilters() };
        f.close();
        lock.release();
        console.log(JSON.stringify(out, (k, v) => typeof v === 'bigint' ? String(v) : v));
      });`;
    // one process per pin dir: the lock is refused while this one holds it
    expect(() => execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', stdio: 'pipe' })).toThrow(`pin dir ${pinDir} is in use by pid ${process.pid}`);
    f.close();
    lock.release();
    const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }));
    expect(out.state.adopted).toBe(true);
    expect(out.state.progIds).toEqual(f.state.progIds);
    expect(out.filters).toHaveLength(1);
    expect(out.filters[0].ranges[0]).toMatchObject({ start: '0', end: '99', matched: '1', failed: '1' });

    // taking the lock again and adopting sees the same program
    lock = native.lock(pinDir);
    const progIds = f.state.progIds;
    f = (await native.adopt(lock))!;
    expect(f.state.adopted).toBe(true);
    expect(f.state.progIds).toEqual(progIds);

    await f.detach();
    expect(fs.readdirSync(pinDir).filter((n) => n.startsWith('link_'))).toEqual([]);
    const links = JSON.parse(execFileSync('bpftool', ['-j', 'link', 'show'], { encoding: 'utf8' }));
    expect(links.some((l: { id: number }) => l.id === f.state.linkIds[0])).toBe(false);
    expect(() => f.listFilters()).toThrow(/closed/);
    f = await native.attach({ mode: 'observe', lock }); // for afterEach/afterAll
  });

  test('every mode forced: attaches where probe says available, is refused (ENOTSUP, no link) where not', async () => {
    const caps = await native.probe();
    // all three are judged, whatever this kernel offers: no mode goes unchecked
    expect(caps.modes.map((m) => m.mode).sort()).toEqual(['fmod_ret', 'kprobe', 'observe']);
    const outcome = async (m: native.ModeCapability) => {
      const lx = native.lock(`${pinDir}-x`);
      try {
        // (the addon's errors are not instanceof this realm's Error under jest)
        const r = await native.attach({ mode: m.mode, lock: lx }).then((g) => ({ g }), (e: NodeJS.ErrnoException) => ({ e }));
        const links = fs.readdirSync(`${pinDir}-x`).filter((n) => n.startsWith('link_')).length;
        if ('e' in r) return { mode: m.mode, attached: false, code: r.e.code, links };
        const g = r.g;
        const { mode, pinned } = g.state;
        await g.detach();
        return { mode, attached: true, code: undefined, links: links - (pinned ? 1 : 0) }; // a pinned link, or none (kprobe < 5.15)
      } finally {
        lx.release();
        fs.rmSync(`${pinDir}-x`, { recursive: true, force: true });
      }
    };
    const seen = [];
    for (const m of caps.modes) seen.push(await outcome(m));
    expect(seen).toEqual(
      caps.modes.map((m) => ({ mode: m.mode, attached: m.available, code: m.available ? undefined : 'ENOTSUP', links: 0 })),
    );
  });
});
