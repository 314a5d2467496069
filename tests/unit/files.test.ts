// `set --file` without a kernel: the conversion of FIEMAP extents to merged sector
// ranges (alignment, every refused extent flag with its message, the range limit) and
// the resolver (path checks, filesystems without a block device named from a mountinfo,
// native errors), with a scripted fileExtents, a fake sysfs and a fake mountinfo.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { splitDev } from '../../agent/devices';
import { extentsToRanges, FileHost, mergeRanges, resolveFile } from '../../agent/files';
import type * as native from '../../native';
import { fakeSysfs } from '../helpers/fake-kernel';
import { refusal, refusalOf } from '../helpers/refusal';

type Ext = native.FileExtents['extents'][number];
const X = (physical: bigint | number, length: bigint | number, flags: string[] = [], logical: bigint | number = 0): Ext => ({
  logical: BigInt(logical),
  physical: BigInt(physical),
  length: BigInt(length),
  flags,
});
const K = 4096;


describe('extentsToRanges', () => {
  test('bytes become inclusive 512-byte sectors in the device coordinates FIEMAP reports', () => {
    expect(extentsToRanges('/f', [X(10 * K, 2 * K, ['last'])], 64)).toEqual([{ start: 80n, end: 95n }]);
    expect(extentsToRanges('/f', [X(512, 512)], 64)).toEqual([{ start: 1n, end: 1n }]);
  });

  test('adjacent extents merge, a gap keeps ranges apart, the result is sorted', () => {
    const ext = [X(100 * K, K, [], 2 * K), X(10 * K, K, [], 0), X(11 * K, K, [], K), X(12 * K, K, ['last'], 3 * K)];
    expect(extentsToRanges('/f', ext, 64)).toEqual([
      { start: 80n, end: 103n }, // 10K..13K-1 in three extents
      { start: 800n, end: 807n },
    ]);
  });

  test('overlapping extents (one block mapped at two file offsets) merge into one range', () => {
    expect(mergeRanges([{ start: 10n, end: 20n }, { start: 15n, end: 17n }, { start: 18n, end: 30n }, { start: 32n, end: 40n }])).toEqual([
      { start: 10n, end: 30n },
      { start: 32n, end: 40n },
    ]);
  });

  test('shared, encrypted (which also sets encoded), merged and last extents are used as they are', () => {
    const ext = [X(0, K, ['shared']), X(2 * K, K, ['encrypted', 'encoded']), X(4 * K, K, ['merged']), X(6 * K, K, ['last'])];
    expect(extentsToRanges('/f', ext, 64)).toEqual([
      { start: 0n, end: 7n },
      { start: 16n, end: 23n },
      { start: 32n, end: 39n },
      { start: 48n, end: 55n },
    ]);
  });

  // the kernel sets not_aligned with inline and tail, and unknown with delalloc: the telling flag is named
  test.each<[string, string[], RegExp]>([
    ['inline data', ['not_aligned', 'inline', 'last'], /^extent 1 of "\/f" \(file offset 4096, 8192 bytes\) holds inline data: .*inside a metadata block.*other files' metadata/],
    ['a packed tail', ['not_aligned', 'tail'], /^extent 1 of "\/f" .* is a packed tail: it shares its block with other files' data$/],
    ['delayed allocation', ['unknown', 'delalloc'], /is delayed allocation: its data is not on disk even after the sync the agent asked for/],
    ['an unknown location', ['unknown'], /has no known location \(FIEMAP_EXTENT_UNKNOWN\)/],
    ['an unwritten (preallocated) extent', ['unwritten'], /is unwritten: space preallocated \(e.g. by fallocate\) and never written - reads of it are answered with zeros without reading the disk and the first write converts it/],
    ['an encoded (compressed) extent', ['encoded'], /is encoded \(e.g. compressed\): its sectors do not hold the file's bytes one for one/],
    ['a not block-aligned extent', ['not_aligned'], /is not block-aligned: its data is packed into sectors that may hold other data too/],
    ['a flag iofilter does not know', ['frobnicated'], /has the extent flag "frobnicated", which iofilter does not know/],
  ])('%s is refused, naming the extent and its file offset', (_what, flags, msg) => {
    const r = refusal(() => extentsToRanges('/f', [X(0, K), X(8 * K, 2 * K, flags, K), X(20 * K, K)], 64));
    expect(r.code).toBe('FAILED_PRECONDITION');
    expect(r.message).toMatch(msg);
  });

  test('the first refused extent is named, with how many of the extents are like it', () => {
    const ext = [X(0, K), X(4 * K, K, ['unwritten'], K), X(8 * K, K, [], 2 * K), X(12 * K, K, ['unwritten', 'last'], 3 * K)];
    const r = refusal(() => extentsToRanges('/data/f', ext, 64));
    expect(r.message).toMatch(/^extent 1 of "\/data\/f" \(file offset 4096, 4096 bytes\) is unwritten: .*\(2 of its 4 extents are like this\)$/);
  });

  test.each<[string, Ext]>([
    ['physical offset', X(K + 100, K)],
    ['length', X(K, 1000)],
  ])('an extent whose %s is not a multiple of 512 is refused', (_what, x) => {
    const r = refusal(() => extentsToRanges('/f', [x], 64));
    expect(r).toEqual({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/does not start and end on 512-byte sector boundaries/) });
  });

  test('a file with nothing on disk (no extents, or only empty ones) is refused', () => {
    for (const ext of [[], [X(0, 0, ['last'])]])
      expect(refusal(() => extentsToRanges('/e', ext, 64))).toEqual({
        code: 'FAILED_PRECONDITION',
        message: '"/e" has nothing on disk to filter: it has no extents (it is empty or entirely sparse)',
      });
  });

  test('the range limit counts ranges after merging: 64 apart fit, 65 do not; 65 extents that merge fit', () => {
    const apart = (n: number) => Array.from({ length: n }, (_, i) => X(i * 2 * K, K, [], i * K));
    expect(extentsToRanges('/f', apart(64), 64)).toHaveLength(64);
    expect(refusal(() => extentsToRanges('/f', apart(65), 64))).toEqual({
      code: 'RESOURCE_EXHAUSTED',
      message: expect.stringMatching(/^"\/f" has 65 extents on disk, 65 sector ranges after merging adjacent ones; a filter holds at most 64 ranges/),
    });
    const touching = Array.from({ length: 65 }, (_, i) => X(i * K, K, [], i * K));
    expect(extentsToRanges('/f', touching, 64)).toEqual([{ start: 0n, end: 65n * 8n - 1n }]);
  });
});

describe('resolveFile', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-files-'));
  const file = path.join(dir, 'a');
  fs.writeFileSync(file, 'data');
  fs.mkdirSync(path.join(dir, 'd'));
  fs.symlinkSync(file, path.join(dir, 'link'));
  execFileSync('mkfifo', [path.join(dir, 'fifo')]);
  const realFile = fs.realpathSync(file);
  const here = splitDev(fs.statSync(realFile, { bigint: true }).dev);
  const mountinfo = path.join(dir, 'mountinfo');
  fs.writeFileSync(
    mountinfo,
    [
      `27 1 ${here.major}:${here.minor} / ${path.dirname(realFile)} rw,relatime - fakefs /dev/sdz1 rw`,
      '40 27 0:45 / /srv/data rw,relatime - btrfs /dev/sdb rw,space_cache=v2',
      '41 27 0:46 / /run/shm rw - tmpfs tmpfs rw',
      '42 27 0:47 / /merged rw - overlay overlay rw,lowerdir=/l,upperdir=/u',
      '43 27 0:48 / /net rw - nfs4 srv:/export rw',
      '44 27 0:49 / /home/u/remote rw - fuse.sshfs u@h: rw',
      '45 27 0:50 / /odd rw - oddfs none rw',
    ].join('\n') + '\n',
  );
  const calls: string[] = [];
  const host = (answer: native.FileExtents | Error): FileHost => ({
    fileExtents: async (p) => {
      calls.push(p);
      if (answer instanceof Error) throw answer;
      return answer;
    },
    maxRanges: 64,
    sysfs: fakeSysfs(),
    mountinfo,
  });
  const onLoop0p1: native.FileExtents = { dev: { major: 7, minor: 1 }, size: 12288n, extents: [X(0, K), X(K, K, [], K), X(10 * K, K, ['last'], 2 * K)] };
  beforeEach(() => void calls.splice(0));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('a regular file: the device holding it (by st_dev, through sysfs) and its merged sectors', async () => {
    const r = await resolveFile(file, host(onLoop0p1));
    expect(r.dev).toMatchObject({ major: 7, minor: 1, name: 'loop0p1', partition: true, start: 2048n });
    expect(r.ranges).toEqual([
      { start: 0n, end: 15n },
      { start: 80n, end: 87n },
    ]);
    expect(calls).toEqual([realFile]);
  });

  test('a symbolic link is followed: the extents asked for are those of its target', async () => {
    await resolveFile(path.join(dir, 'link'), host(onLoop0p1));
    expect(calls).toEqual([realFile]);
  });

  test.each<[string, string, string, RegExp]>([
    ['a directory', 'd', 'INVALID_ARGUMENT', /^file ".*\/d" is a directory, not a regular file$/],
    ['a FIFO (never opened: that would block)', 'fifo', 'INVALID_ARGUMENT', /^file ".*\/fifo" is a FIFO, not a regular file$/],
    ['a missing file', 'nope', 'NOT_FOUND', /^file ".*\/nope" does not exist on this host$/],
    ['a path through a regular file', 'a/b', 'NOT_FOUND', /a component of the path is not a directory/],
  ])('%s is refused before FIEMAP', async (_what, name, code, msg) => {
    expect(await refusalOf(resolveFile(path.join(dir, name), host(onLoop0p1)))).toEqual({ code, message: expect.stringMatching(msg) });
    expect(calls).toEqual([]);
  });

  test.each<[string, number, RegExp]>([
    ['btrfs', 45, /is on btrfs \(\/dev\/sdb at \/srv\/data\), which has no block device \(device number 0:45\): btrfs gives its files an anonymous device number, and the extents it reports are addresses in its own space, which can span several devices/],
    ['tmpfs', 46, /is on tmpfs \(tmpfs at \/run\/shm\), which has no block device \(device number 0:46\): the file lives in memory/],
    ['overlayfs', 47, /is on overlay \(overlay at \/merged\), .*data is in a file of its upper or lower filesystem: name that file instead/],
    ['NFS', 48, /is on nfs4 \(srv:\/export at \/net\), .*not on a block device of this host/],
    ['FUSE', 49, /is on fuse.sshfs \(u@h: at \/home\/u\/remote\), .*not on a block device of this host/],
    ['an unknown filesystem', 50, /is on oddfs \(none at \/odd\), which has no block device \(device number 0:50\): its filesystem is on no block device of this host/],
  ])('a file on %s (anonymous device 0:N) is refused, naming the filesystem', async (_fs, minor, msg) => {
    const r = await refusalOf(resolveFile(file, host({ dev: { major: 0, minor }, size: 4n, extents: [X(0, K)] })));
    expect(r.code).toBe('FAILED_PRECONDITION');
    expect(r.message).toMatch(msg);
    expect(r.message).toMatch(/--file works on ext4 and xfs, also on dm\/LVM and md devices$/);
  });

  test('a filesystem without FIEMAP (ENOTSUP) is refused, named from the mountinfo by the file device', async () => {
    const e = Object.assign(new Error(`${realFile}: its filesystem does not report extents (FIEMAP)`), { code: 'ENOTSUP' });
    const r = await refusalOf(resolveFile(file, host(e)));
    expect(r.code).toBe('FAILED_PRECONDITION');
    // the temp dir's own device decides which: a block device lacking FIEMAP, or none at all (tmpfs)
    expect(r.message).toMatch(/^file ".*\/a" is on fakefs \(\/dev\/sdz1 at .*\), which (does not report file extents \(FIEMAP\)|has no block device)/);
  });

  test.each<[string, Error, string, RegExp]>([
    ['not a regular file after all (EINVAL)', Object.assign(new RangeError('/x is not a regular file'), { code: 'EINVAL' }), 'INVALID_ARGUMENT', /is not a regular file/],
    ['gone in between (ENOENT)', Object.assign(new Error('opening /x: No such file or directory'), { code: 'ENOENT' }), 'NOT_FOUND', /does not exist on this host/],
    ['unreadable (EACCES)', Object.assign(new Error('opening /x: Permission denied'), { code: 'EACCES' }), 'FAILED_PRECONDITION', /the agent may not read it \(EACCES\)/],
    ['an I/O error', Object.assign(new Error('FIEMAP on /x: Input/output error'), { code: 'EIO' }), 'INTERNAL', /^file ".*\/a": FIEMAP on \/x: Input\/output error$/],
  ])('a native error: %s', async (_what, err, code, msg) => {
    expect(await refusalOf(resolveFile(file, host(err)))).toEqual({ code, message: expect.stringMatching(msg) });
  });

  test('a device that sysfs does not know is NOT_FOUND', async () => {
    const r = await refusalOf(resolveFile(file, host({ dev: { major: 8, minor: 99 }, size: 4n, extents: [X(0, K)] })));
    expect(r).toEqual({ code: 'NOT_FOUND', message: expect.stringMatching(/no block device 8:99 on this host/) });
  });
});
