// Device identity: a filter is bound to the medium behind its device number (the
// disk's diskseq, Linux 5.15+), so a loop device re-attached to another file under a
// live filter is another disk: the kernel stops matching it at once, the agent removes
// the filter, and a new filter on the new medium drops the old ones. Observe mode on
// the host kernel, real loop devices; an unbound filter on the same device is the
// control that shows the old behaviour (it follows the number to the new file).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as native from '../../native';
import { IoFilterClient } from '../../client';
import { startAgent, RunningAgent } from '../helpers/agent';
import { createLoop, directIo, LoopDevice } from '../helpers/loop';
import { BUILT, describeIf, hostUnavailableReason } from '../helpers/tier';
import { until } from '../helpers/wait';

const diskseqReason = (): string | null =>
  fs.existsSync('/sys/block/loop0/diskseq') || fs.readdirSync('/sys/block').some((d) => fs.existsSync(`/sys/block/${d}/diskseq`))
    ? null
    : 'this kernel has no diskseq (Linux 5.15+)';
const d = describeIf(hostUnavailableReason(BUILT.addon, BUILT.agent) ?? diskseqReason());

const seqOf = (l: LoopDevice) => BigInt(fs.readFileSync(`/sys/block/${path.basename(l.path)}/diskseq`, 'utf8').trim());

/** Points the loop device at a fresh file of the same size: same number, new medium. */
function reattach(l: LoopDevice): void {
  execFileSync('losetup', ['-d', l.path]);
  const other = path.join(path.dirname(l.backing), 'other.img');
  execFileSync('truncate', ['-s', `${l.sizeSectors * 512}`, other]);
  execFileSync('losetup', [l.path, other]);
}

d('device identity (diskseq) on the host kernel', () => {
  describe('native binding', () => {
    const pinDir = `/sys/fs/bpf/iofilter-identity-${process.pid}`;
    let f: native.Filterer;
    let lock: native.PinDirLock;
    let loop: LoopDevice;
    beforeAll(async () => {
      lock = native.lock(pinDir);
      f = await native.attach({ mode: 'observe', lock });
    });
    afterAll(async () => {
      await f?.detach();
      lock?.release();
      fs.rmSync(pinDir, { recursive: true, force: true });
    });
    beforeEach(() => {
      loop = createLoop(8);
    });
    afterEach(() => loop?.detach());

    const spec = (l: LoopDevice, diskseq?: bigint, cgroupId?: bigint): native.FilterSpec => ({
      device: { major: l.major, minor: l.minor },
      disk: { major: l.major, minor: l.minor },
      offset: 0n,
      size: BigInt(l.sizeSectors),
      ranges: [{ start: 0n, end: 63n, ops: ['write'] }],
      ...(diskseq !== undefined && { diskseq }),
      ...(cgroupId !== undefined && { cgroup: { id: cgroupId, level: 0 } }),
    });
    const matched = (id: number) => f.getFilter({ id })!.matchedIos;

    test('a bound filter stops matching when the loop device gets a new file; an unbound one follows the number', () => {
      const before = seqOf(loop);
      const bound = f.putFilter(spec(loop, before));
      expect(bound.diskseq).toBe(before);
      expect(directIo(loop.path, 'write', 8).ok).toBe(true);
      expect(matched(bound.id)).toBe(1n);

      reattach(loop);
      expect(seqOf(loop)).not.toBe(before);
      expect(directIo(loop.path, 'write', 8).ok).toBe(true);
      expect(matched(bound.id)).toBe(1n); // the kernel judged it another disk

      // control: the same I/O under an unbound filter is matched, so the I/O above did
      // reach the program and the difference is the binding alone
      f.deleteFilter({ id: bound.id });
      const unbound = f.putFilter(spec(loop));
      expect(unbound.diskseq).toBe(0n);
      expect(directIo(loop.path, 'write', 8).ok).toBe(true);
      expect(matched(unbound.id)).toBe(1n);
    });

    test('a filter set on the new medium drops the filters bound to the old one', () => {
      const old = f.putFilter(spec(loop, seqOf(loop), 1n)); // a scoped one: not replaced by key
      reattach(loop);
      const now = seqOf(loop);
      const fresh = f.putFilter(spec(loop, now));
      expect(f.getFilter({ id: old.id })).toBeNull();
      const mine = f.listFilters().filter((x) => x.device.major === loop.major && x.device.minor === loop.minor);
      expect(mine.map((x) => x.id)).toEqual([fresh.id]);
      expect(directIo(loop.path, 'write', 8).ok).toBe(true);
      expect(matched(fresh.id)).toBe(1n);
    });
  });

  describe('agent', () => {
    let agent: RunningAgent;
    let client: IoFilterClient;
    let loop: LoopDevice;
    beforeAll(async () => {
      agent = await startAgent({ pinDir: `/sys/fs/bpf/iofilter-identity-agent-${process.pid}` });
      client = new IoFilterClient(agent.address, { timeoutMs: 5000 });
      loop = createLoop(8);
    });
    afterAll(async () => {
      try {
        await client?.detach();
      } finally {
        client?.close();
        await agent?.stop();
        loop?.detach();
      }
    });

    test('Status shows the binding; a re-attached device loses its filter and the agent says why', async () => {
      const f = await client.setFilter({ device: loop.path, ranges: [{ start: 0, end: 63, ops: ['OP_WRITE'] }], ttlMs: 60_000 });
      expect(f.diskseq).toBe(String(seqOf(loop)));
      const listed = (await client.status()).filters.find((x) => x.id === f.id);
      expect(listed?.diskseq).toBe(f.diskseq);

      reattach(loop);
      await until(async () => !(await client.status()).filters.some((x) => x.id === f.id), 'the agent removed the filter of the old medium', 10_000, 100);
      expect(agent.logs()).toMatch(/removed a filter whose disk has a new medium/);
      expect(agent.logs()).toContain(`"filterId":${f.id}`);
    });
  });
});
