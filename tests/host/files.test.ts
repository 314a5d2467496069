// `set --file` against a real agent in observe mode (root): ext4 on a partition of a
// loop device, with two files whose blocks interleave; `iofilterctl set --file A --read`
// makes a filter of A's extents (as filefrag reports them) that counts direct reads of
// A's blocks, exactly one per read, and none of B's (sectors in the partition's own
// coordinates, as FIEMAP reports them); files the agent must refuse, on
// tmpfs, unwritten, inline, empty, not regular, missing, or on a protected device.
// Needs root, loop devices, e2fsprogs (mkfs.ext4, filefrag), util-linux, `npm run build`.
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { status } from '@grpc/grpc-js';
import { IoFilterClient } from '../../client';
import type { Filter__Output } from '../../proto/gen/iofilter/v1/Filter';
import { AGENT_MAIN, RunningAgent, startAgent } from '../helpers/agent';
import { ROOT } from '../helpers/common';
import * as native from '../../native';
import { createLoop, loopUnavailableReason, LoopDevice } from '../helpers/loop';
import { describeIf } from '../helpers/tier';

const CLI = path.join(ROOT, 'dist', 'client', 'cli.js');
const TOOLS = ['mkfs.ext4', 'filefrag', 'fallocate', 'mount', 'umount', 'dd'];

function unavailable(): string | null {
  const loop = loopUnavailableReason();
  if (loop) return loop;
  const missing = TOOLS.filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
  if (missing.length) return `missing tools: ${missing.join(', ')} (e2fsprogs, util-linux, coreutils)`;
  if (!fs.existsSync(AGENT_MAIN) || !fs.existsSync(CLI)) return 'the project is not built (npm run build)';
  return null;
}
const d = describeIf(unavailable()); // says why; under CI (inCi()) a suite that cannot run fails

const BLOCK = 4096;
const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
/** Appends one 4 KiB block with O_DIRECT: allocated and on disk when dd returns. */
const appendBlock = (file: string) => sh('dd', ['if=/dev/urandom', `of=${file}`, `bs=${BLOCK}`, 'count=1', 'oflag=direct,append', 'conv=notrunc', 'status=none']);
/** One direct read of the 4 KiB block at `block` of `file`: one bio to the loop device. */
const readBlock = (file: string, block: number) => sh('dd', [`if=${file}`, 'of=/dev/null', `bs=${BLOCK}`, 'count=1', `skip=${block}`, 'iflag=direct', 'status=none']);

interface Extent {
  logical: number; // in blocks
  physical: number;
  length: number;
}
/** The file's extents as `filefrag -v` prints them, in filesystem blocks. */
function filefrag(file: string): Extent[] {
  const out = sh('filefrag', ['-v', file]);
  return [...out.matchAll(/^\s*\d+:\s+(\d+)\.\.\s*\d+:\s+(\d+)\.\.\s*\d+:\s+(\d+):/gm)].map((m) => ({ logical: +m[1], physical: +m[2], length: +m[3] }));
}
/** Extents as merged inclusive 512-byte sector ranges ("start-end"). */
function sectorRanges(ext: Extent[]): string[] {
  const spb = BLOCK / 512;
  const rs = ext.map((x) => [x.physical * spb, (x.physical + x.length) * spb - 1]).sort((a, b) => a[0] - b[0]);
  const out: number[][] = [];
  for (const r of rs) {
    const last = out[out.length - 1];
    if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else out.push([...r]);
  }
  return out.map(([s, e]) => `${s}-${e}`);
}
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

async function ctl(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, [CLI, '--timeout', '30s', ...args]).then(
    (r) => ({ code: 0, ...r }),
    (e) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

d('set --file on ext4 on a loop partition, agent in observe mode (root)', () => {
  const pid = process.pid;
  const pinDirs = [`/sys/fs/bpf/iofilter-files-test-${pid}`, `/sys/fs/bpf/iofilter-files-test-${pid}-protect`];
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-files-'));
  const mnt = path.join(work, 'ext4');
  const shm = path.join(work, 'tmpfs');
  const guarded = path.join(work, 'guarded'); // the second agent's audit log lives here
  const mounted: string[] = [];
  const loops: LoopDevice[] = [];
  const agents: RunningAgent[] = [];
  let disk: LoopDevice;
  let part: LoopDevice['partitions'][number];
  let agent: RunningAgent;
  let client: IoFilterClient;
  const A = path.join(mnt, 'a');
  const B = path.join(mnt, 'b');

  const mkfs = (dev: string, dir: string) => {
    // inline_data: tiny files keep their bytes in the inode; eager init: no background writes
    sh('mkfs.ext4', ['-q', '-F', '-b', String(BLOCK), '-O', 'inline_data', '-E', 'lazy_itable_init=0,lazy_journal_init=0', dev]);
    fs.mkdirSync(dir, { recursive: true });
    sh('mount', [dev, dir]);
    mounted.push(dir);
  };

  beforeAll(async () => {
    disk = createLoop(80, [64]);
    loops.push(disk);
    part = disk.partitions[0];
    mkfs(part.path, mnt);
    // A and B grow one block at a time, alternately: their blocks interleave on disk
    for (let i = 0; i < 6; i++) {
      appendBlock(A);
      appendBlock(B);
    }
    fs.mkdirSync(shm);
    sh('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'iof-files-test', shm]);
    mounted.push(shm);
    const other = createLoop(32);
    loops.push(other);
    mkfs(other.path, guarded);
    fs.writeFileSync(path.join(guarded, 'f'), Buffer.alloc(BLOCK, 1), { flush: true });
    agent = await startAgent({ pinDir: pinDirs[0], attach: 'observe' });
    agents.push(agent);
    client = new IoFilterClient(agent.address, { timeoutMs: 30_000 });
  });
  afterAll(async () => {
    client?.close();
    for (const a of agents) {
      await ctl('--host', a.address, 'detach');
      await a.stop();
    }
    for (const p of pinDirs) fs.rmSync(p, { recursive: true, force: true });
    for (const m of mounted.reverse()) spawnSync('umount', [m]); // before the loops go
    for (const l of loops) l.detach();
    fs.rmSync(work, { recursive: true, force: true });
  });

  const filterOf = async (file: string): Promise<Filter__Output> => {
    const f = (await client.status()).filters.find((x) => x.file === file);
    if (!f) throw new Error(`no filter made from ${file}`);
    return f;
  };

  test('set --file A --read: one range per merged extent of A on the loop device, then direct reads of A count and reads of B do not', async () => {
    const a = filefrag(A);
    const b = filefrag(B);
    expect(a.length).toBeGreaterThan(1);
    const spb = BLOCK / 512;
    const aStart = Math.min(...a.map((x) => x.physical * spb));
    const aEnd = Math.max(...a.map((x) => (x.physical + x.length) * spb - 1));
    // B has blocks inside A's span: a filter over the span (not the extents) would count B's reads
    expect(b.some((x) => x.physical * spb > aStart && x.physical * spb < aEnd)).toBe(true);

    const r = await ctl('--host', agent.address, 'set', '--file', A, '--read', '--ttl', '10m');
    expect(r.stderr).toMatch(/^1 ok, 0 failed, 0 unreachable/m);
    expect(r.code).toBe(0);
    const want = sectorRanges(a);
    const name = `${path.basename(part.path)} \\(${part.major}:${part.minor}\\)`;
    expect(r.stdout.trim()).toMatch(new RegExp(`^${esc(agent.address)}: set ${name}, file ${esc(A)}: ${want.map((w) => `${w} read`).join('; ')}; ttl 10m0s; filter \\d+$`));

    const f = await filterOf(A);
    expect(f.device).toMatchObject({ major: part.major, minor: part.minor, partition: true, startSector: String(part.start) });
    expect(f.ranges.map((x) => `${x.start}-${x.end}`)).toEqual(want);
    expect(f.ranges.map((x) => x.matched)).toEqual(want.map(() => '0'));

    // one direct read of the first block of each extent of A: one bio each
    for (const x of a) readBlock(A, x.logical);
    const expected = want.map((w) => {
      const [s, e] = w.split('-').map(Number);
      return String(a.filter((x) => x.physical * spb >= s && x.physical * spb <= e).length);
    });
    const after = await filterOf(A);
    expect(after.ranges.map((x) => x.matched)).toEqual(expected);
    expect(after.ranges.map((x) => x.failed)).toEqual(expected); // observe: would have failed
    expect(after.matchedIos).toBe(String(a.length));

    // every block of B, read directly: nothing more is counted
    for (let i = 0; i < 6; i++) readBlock(B, i);
    const afterB = await filterOf(A);
    expect(afterB.ranges.map((x) => x.matched)).toEqual(expected);
    expect(afterB.matchedIos).toBe(String(a.length));

    const st = await ctl('--host', agent.address, 'status');
    expect(st.stdout).toMatch(new RegExp(`│ ${name}\\s+│ any\\s+│ ${want[0]}\\s+│ read\\s+│ error EIO\\s+│ ${expected[0]}\\s+│`));
    expect(st.stdout).toMatch(new RegExp(`│\\s+│ file ${esc(A)}\\s+│`));
  });

  test('an agent restarted on the same pin dir adopts the filter and still shows its file and counters', async () => {
    const before = await filterOf(A);
    expect(await agent.stop()).toBe(0);
    client.close();
    agent = await startAgent({ pinDir: pinDirs[0], attach: 'observe' });
    agents.push(agent);
    client = new IoFilterClient(agent.address, { timeoutMs: 30_000 });
    const after = await filterOf(A);
    expect(after).toMatchObject({ id: before.id, file: A, matchedIos: before.matchedIos });
    expect(after.ranges.map((x) => [x.start, x.end, x.matched])).toEqual(before.ranges.map((x) => [x.start, x.end, x.matched]));
  });

  test('native fileExtents: every extent of A as filefrag sees it; one extent short of them, E2BIG and nothing partial', async () => {
    const want = filefrag(A);
    expect(want.length).toBeGreaterThan(1);
    const got = await native.fileExtents(A, want.length);
    const blocks = (v: bigint) => Number(v / BigInt(BLOCK));
    expect(got.extents.map((x) => ({ logical: blocks(x.logical), physical: blocks(x.physical), length: blocks(x.length) }))).toEqual(want);
    await expect(native.fileExtents(A, want.length - 1)).rejects.toMatchObject({ code: 'E2BIG', message: expect.stringContaining(`more than ${want.length - 1} extents`) });
    // argument checks throw at once (a RangeError of the addon's realm, so matched by name)
    let bad: unknown;
    try {
      void native.fileExtents(A, -1);
    } catch (e) {
      bad = e;
    }
    expect(bad).toMatchObject({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
  });

  test('a file just written through the page cache (delayed allocation) is flushed by FIEMAP_FLAG_SYNC and accepted', async () => {
    const c = path.join(mnt, 'c');
    fs.writeFileSync(c, Buffer.alloc(3 * BLOCK, 7)); // no fsync
    const f = await client.setFilter({ file: c, wholeDeviceOps: ['OP_WRITE'] }, 'full');
    expect(f.file).toBe(c);
    expect(f.ranges.map((x) => `${x.start}-${x.end}`)).toEqual(sectorRanges(filefrag(c)));
  });

  const refused = async (file: string) => {
    const e = await client.setFilter({ file, wholeDeviceOps: ['OP_READ'] }).then(() => null, (x) => x);
    if (!e) throw new Error(`${file} was not refused`);
    return { code: status[e.code], details: e.details as string };
  };

  test('refused: a file on tmpfs, a directory, a missing file, a preallocated (unwritten) file, an empty file, an inline file', async () => {
    const t = path.join(shm, 't');
    fs.writeFileSync(t, 'in memory');
    const pre = path.join(mnt, 'prealloc');
    sh('fallocate', ['-l', '1M', pre]);
    const empty = path.join(mnt, 'empty');
    fs.writeFileSync(empty, '');
    const tiny = path.join(mnt, 'tiny');
    fs.writeFileSync(tiny, 'hello', { flush: true });
    const before = (await client.status()).filters.map((x) => [x.id, x.file]);

    expect(await refused(t)).toEqual({
      code: 'FAILED_PRECONDITION',
      details: expect.stringMatching(new RegExp(`^file "${esc(t)}" is on tmpfs \\(iof-files-test at ${esc(shm)}\\), which has no block device \\(device number 0:\\d+\\): the file lives in memory`)),
    });
    expect(await refused(mnt)).toEqual({ code: 'INVALID_ARGUMENT', details: `file "${mnt}" is a directory, not a regular file` });
    expect(await refused(path.join(mnt, 'nope'))).toEqual({ code: 'NOT_FOUND', details: `file "${path.join(mnt, 'nope')}" does not exist on this host` });
    expect(await refused(pre)).toEqual({ code: 'FAILED_PRECONDITION', details: expect.stringMatching(new RegExp(`^extent 0 of "${esc(pre)}" \\(file offset 0, \\d+ bytes\\) is unwritten: space preallocated`)) });
    expect(await refused(empty)).toEqual({ code: 'FAILED_PRECONDITION', details: `"${empty}" has nothing on disk to filter: it has no extents (it is empty or entirely sparse)` });
    expect(await refused(tiny)).toEqual({ code: 'FAILED_PRECONDITION', details: expect.stringMatching(new RegExp(`^extent 0 of "${esc(tiny)}" \\(file offset 0, 5 bytes\\) holds inline data`)) });
    expect((await client.status()).filters.map((x) => [x.id, x.file])).toEqual(before); // nothing changed
  });

  test("refused: a file on a protected device (one holding the agent's audit log)", async () => {
    const guard = await startAgent({ pinDir: pinDirs[1], attach: 'observe', args: ['--audit-log', path.join(guarded, 'audit.jsonl')] });
    agents.push(guard);
    const c = new IoFilterClient(guard.address, { timeoutMs: 30_000 });
    try {
      const e = await c.setFilter({ file: path.join(guarded, 'f'), wholeDeviceOps: ['OP_READ'] }).then(() => null, (x) => x);
      expect(e).not.toBeNull();
      expect(status[e.code]).toBe('FAILED_PRECONDITION');
      expect(e.details).toMatch(new RegExp(`^device \\d+:\\d+ \\(${esc(path.basename(loops[1].path))}\\) is protected: sectors \\d+-\\d+ overlap .*which holds the agent's files \\(${esc(path.join(guarded, 'audit.jsonl'))}\\)`));
      expect((await c.status()).filters).toEqual([]);
    } finally {
      c.close();
    }
  });
});
