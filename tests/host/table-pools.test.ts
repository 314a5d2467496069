// The filter table's limits on the host kernel (observe mode): a change that needs
// memory only a grace period frees never wedges the agent; a TTL whose expiry would
// not fit the program's u64 is refused and changes nothing.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as native from '../../native';
import { ROOT } from '../helpers/common';
import { createLoop, LoopDevice } from '../helpers/loop';
import { BUILT, describeIf, hostUnavailableReason } from '../helpers/tier';

const CHILD = 'dist/tests/helpers/replace-child.js';
const d = describeIf(hostUnavailableReason(BUILT.addon, CHILD));

d('filter table limits on the host kernel', () => {
  let disk: LoopDevice;
  beforeAll(() => {
    disk = createLoop(16);
  });
  afterAll(() => disk?.detach());

  test('a 30-range filter replaced 40 times, 1 ms apart, in a 32-range pool (80 slots): every change completes', () => {
    // 30 > (2 * 32 + 16) / 3: each change needs the 30 slots the one before quarantined
    const pinDir = `/sys/fs/bpf/iofilter-pools-${process.pid}`;
    const r = spawnSync(process.execPath, [path.join(ROOT, CHILD), pinDir, String(disk.major), String(disk.minor), '32', '30', '40'],
      { encoding: 'utf8', timeout: 60_000, killSignal: 'SIGKILL' });
    fs.rmSync(pinDir, { recursive: true, force: true });
    expect(r.signal).toBeNull(); // killed at the timeout: the binding hung
    expect(r.stdout.trim()).toMatch(/^\{"ok":true,"ranges":30,"ms":\d+\}$/);
    expect(r.status).toBe(0);
  });

  describe('TTL bound', () => {
    const pinDir = `/sys/fs/bpf/iofilter-ttl-${process.pid}`;
    let f: native.Filterer;
    let lock: native.PinDirLock;
    const dev = () => ({ major: disk.major, minor: disk.minor });
    const put = (ttlMs: number) => f.putFilter({ device: dev(), disk: dev(), offset: 0n, ranges: [{ start: 0n, end: 99n, ops: ['write'] }], ttlMs });
    beforeAll(async () => {
      lock = native.lock(pinDir);
      f = await native.attach({ mode: 'observe', lock, selfTest: false });
    });
    afterAll(async () => {
      await f?.detach();
      lock?.release();
      fs.rmSync(pinDir, { recursive: true, force: true });
    });

    test('1e13 ms (317 years) is the longest TTL: accepted, and remaining time says so', () => {
      const got = put(1e13);
      expect(got.remainingMs).toBeGreaterThan(1e13 - 60_000);
      expect(got.remainingMs).toBeLessThanOrEqual(1e13);
    });

    test.each([1e13 + 1, 2e13, 1e15])('%d ms, whose expiry in ns would wrap u64 above ~1.8e13, is a RangeError that changes nothing', (ttl) => {
      const before = put(60_000);
      let err: any;
      try {
        put(ttl);
      } catch (e) {
        err = e;
      }
      expect({ name: err?.name, code: err?.code }).toEqual({ name: 'RangeError', code: 'ERANGE' }); // (another realm's RangeError)
      expect(err.message).toBe(`ttlMs must be a number from 0 to 10000000000000 (317 years), got ${ttl}`);
      const after = f.getFilter({ device: dev() })!;
      expect(after.id).toBe(before.id);
      expect(after.remainingMs).toBeGreaterThan(0);
      expect(after.remainingMs).toBeLessThanOrEqual(60_000);
    });
  });
});
