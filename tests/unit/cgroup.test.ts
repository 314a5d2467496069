// Cgroup scope resolution (agent/cgroup.ts) over a fake cgroup v2 tree in a temp dir:
// the mount found in mountinfo, paths, ids and pids to {id, level, path}, the refusals,
// the pid mapping from a private cgroup namespace, and every warning.
import * as fs from 'node:fs';
import { CgroupQuery, CgroupResolver } from '../../agent/cgroup';
import { fakeCgroups, FakeCgroups } from '../helpers/fake-cgroups';
import { refusal } from '../helpers/refusal';

const trees: FakeCgroups[] = [];
const tree = (o?: Parameters<typeof fakeCgroups>[0]) => {
  const t = fakeCgroups(o);
  trees.push(t);
  return t;
};
afterAll(() => trees.forEach((t) => t.cleanup()));


describe('the cgroup2 mount', () => {
  test('found in mountinfo (escaped space in the mount point), nothing hybrid', () => {
    const t = tree();
    expect(t.resolver.mount()).toEqual({ dir: t.dir, nsDepth: 0, blkioV1: null });
  });
  test('a v1 hierarchy with blkio is reported (hybrid layout)', () => {
    const t = tree({ blkioV1: true });
    expect(t.resolver.mount().blkioV1).toMatch(/\/blkio$/);
  });
  test('no cgroup2 mount -> FAILED_PRECONDITION', () => {
    expect(refusal(() => tree({ noCgroup2: true }).resolver.mount())).toEqual({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/no cgroup v2 hierarchy is mounted/) });
  });
  test('a mount that shows only a sub-tree (a non-root cgroup) -> FAILED_PRECONDITION naming the fix', () => {
    const t = tree();
    const sub = tree();
    // the second tree's only cgroup2 mount is a non-root cgroup of the first
    fs.writeFileSync(sub.mountinfo, `31 22 0:28 / ${t.dir.replace(/ /g, '\\040')}/system.slice rw - cgroup2 cgroup2 rw\n`);
    expect(refusal(() => sub.resolver.mount())).toEqual({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/shows only a sub-tree.*hostPath mount of \/sys\/fs\/cgroup/) });
  });
  test('in a private cgroup namespace ("/../.." root) the depth to the hierarchy root is kept', () => {
    expect(tree({ mountRoot: '/../..' }).resolver.mount().nsDepth).toBe(2);
  });
});

describe('resolving', () => {
  let t: FakeCgroups;
  beforeAll(() => {
    t = tree();
    t.addPid(4321, '/system.slice/db.service');
    t.addPid(4322, '/', '/'); // in the root cgroup
  });
  const ok = (q: CgroupQuery) => t.resolver.resolve(q);

  test.each([
    ['relative to the mount', '/system.slice/db.service', '/system.slice/db.service', 2],
    ['without the leading slash', 'system.slice/db.service', '/system.slice/db.service', 2],
    ['with a trailing slash and "."', '/system.slice/./db.service/', '/system.slice/db.service', 2],
    ['one level', '/user.slice', '/user.slice', 1],
    ['three levels', '/system.slice/db.service/worker', '/system.slice/db.service/worker', 3],
    ['the root', '/', '/', 0],
  ])('path %s: %s', (_n, given, want, level) => {
    expect(ok({ path: given })).toEqual({ id: t.id(want), level, path: want });
  });
  test('an absolute path under the mount point', () => {
    expect(ok({ path: `${t.dir}/kubepods.slice/pod-a/ctr-a` })).toEqual({ id: t.id('/kubepods.slice/pod-a/ctr-a'), level: 3, path: '/kubepods.slice/pod-a/ctr-a' });
    expect(ok({ path: t.dir })).toEqual({ id: t.id('/'), level: 0, path: '/' });
  });
  test('ids are the inode numbers, distinct per cgroup', () => {
    const ids = ['/', '/system.slice', '/system.slice/db.service', '/user.slice'].map((p) => ok({ path: p }).id);
    expect(new Set(ids).size).toBe(4);
  });
  test('by id: found by walking the tree, also deep and the root', () => {
    for (const p of ['/kubepods.slice/pod-b/ctr-b', '/system.slice/db.service/worker', '/']) {
      const r = ok({ id: t.id(p) });
      expect(r.path).toBe(p);
      expect(r.id).toBe(t.id(p));
    }
  });
  test('by pid: its "0::" line, and the pid is kept', () => {
    expect(ok({ pid: 4321 })).toEqual({ id: t.id('/system.slice/db.service'), level: 2, path: '/system.slice/db.service', fromPid: 4321 });
    expect(ok({ pid: 4322 })).toMatchObject({ level: 0, path: '/', fromPid: 4322 });
  });

  test.each<[string, CgroupQuery, string, RegExp]>([
    ['a path with ..', { path: '/system.slice/../user.slice' }, 'INVALID_ARGUMENT', /cgroup_path: "\/system.slice\/..\/user.slice" must not contain "\.\."/],
    ['a path that does not exist', { path: '/nope.slice' }, 'NOT_FOUND', /cgroup_path: "\/nope.slice": no cgroup .*\/nope.slice/],
    ['a file, not a cgroup directory', { path: '/system.slice/cgroup.procs' }, 'INVALID_ARGUMENT', /is not a cgroup directory/],
    ['a path outside the mount (under /sys)', { path: '/sys/fs/cgroup/memory/x' }, 'INVALID_ARGUMENT', /is outside the cgroup2 mount .*cg root/],
    ['a path outside the mount (exists elsewhere)', { path: '/etc' }, 'INVALID_ARGUMENT', /"\/etc" is outside the cgroup2 mount/],
    ['a NUL byte', { path: '/a\0b' }, 'INVALID_ARGUMENT', /is not a valid path/],
    ['an id not in the tree', { id: 18446744073709551615n }, 'NOT_FOUND', /cgroup_id: 18446744073709551615: no cgroup with this id under /],
    ['a pid that does not exist', { pid: 999999 }, 'NOT_FOUND', /pid: 999999: no such process/],
  ])('%s', (_n, q, code, msg) => {
    expect(refusal(() => ok(q))).toEqual({ code, message: expect.stringMatching(msg) });
  });
  test('a pid without a cgroup v2 line -> NOT_FOUND', () => {
    t.addPid(4323, '/user.slice');
    fs.writeFileSync(`${t.proc}/4323/cgroup`, '1:name=systemd:/user.slice\n');
    expect(refusal(() => ok({ pid: 4323 }))).toEqual({ code: 'NOT_FOUND', message: expect.stringMatching(/pid: 4323: no cgroup v2 entry \("0::"\)/) });
  });
  test('the id search is bounded and says so', () => {
    const small = new CgroupResolver({ mountinfo: t.mountinfo, proc: t.proc, maxWalk: 3 });
    expect(refusal(() => small.resolve({ id: t.id('/kubepods.slice/pod-b/ctr-b') }))).toEqual({
      code: 'NOT_FOUND',
      message: expect.stringMatching(/searched the first 3 cgroups; give cgroup_path instead/),
    });
    expect(small.resolve({ id: t.id('/system.slice') }).path).toBe('/system.slice'); // within the bound
  });
});

describe('pids seen from a private cgroup namespace', () => {
  // The agent's namespace root is /kubepods.slice/pod-a/ctr-a: mountinfo shows the
  // mount's root as "/../../..", and /proc/PID/cgroup is relative to ctr-a.
  let t: FakeCgroups;
  beforeAll(() => {
    t = tree({ mountRoot: '/../../..' });
    t.addPid(100, '/kubepods.slice/pod-a/ctr-a', '/'); // in the agent's own cgroup
    t.addPid(200, '/kubepods.slice/pod-b/ctr-b', '/../../pod-b/ctr-b'); // shares /kubepods.slice
    t.addPid(300, '/system.slice/db.service', '/../../../system.slice/db.service'); // shares only the root
    t.addPid(400, '/kubepods.slice/pod-a/ctr-a', '/../../pod-b/ctr-b'); // lies: not in ctr-b's cgroup.procs
  });
  test.each([
    [100, '/kubepods.slice/pod-a/ctr-a', 3],
    [200, '/kubepods.slice/pod-b/ctr-b', 3],
    [300, '/system.slice/db.service', 2],
  ])('pid %d -> %s (level %d)', (pid, want, level) => {
    expect(t.resolver.resolve({ pid })).toEqual({ id: t.id(want), level, path: want, fromPid: pid });
  });
  test('a cgroup whose cgroup.procs does not hold the pid is not taken for it', () => {
    expect(refusal(() => t.resolver.resolve({ pid: 400 }))).toEqual({ code: 'NOT_FOUND', message: expect.stringMatching(/pid: 400: its cgroup \/..\/..\/pod-b\/ctr-b .*was not found/) });
  });
  test('paths still name cgroups from the hierarchy root', () => {
    expect(t.resolver.resolve({ path: '/kubepods.slice/pod-b' })).toMatchObject({ level: 2, path: '/kubepods.slice/pod-b' });
  });
});

describe('warnings', () => {
  const warn = (t: FakeCgroups, p: string) => t.resolver.warnings(t.resolver.resolve({ path: p }));

  test('io and memory enabled down to the cgroup (and the root): none', () => {
    const t = tree();
    expect(warn(t, '/system.slice/db.service')).toEqual([]);
    expect(warn(t, '/')).toEqual([]);
  });
  test('io and memory not enabled: charged to the nearest ancestor that has them, with the commands', () => {
    const t = tree();
    const [io, mem, ...rest] = warn(t, '/system.slice/db.service/worker');
    expect(rest).toEqual([]);
    expect(io).toBe(
      'the io controller is not enabled for /system.slice/db.service/worker (its cgroup.controllers has no "io"): its I/O is charged to /system.slice/db.service, ' +
        "the nearest ancestor that has it, and this filter will not see it as /system.slice/db.service/worker's; " +
        `enable it with: echo +io > '${t.dir}/system.slice/db.service/cgroup.subtree_control'`,
    );
    expect(mem).toMatch(/^the memory controller is not enabled for \/system.slice\/db.service\/worker: its page-cache writeback is charged to \/system.slice\/db.service/);
  });
  test('several levels without io: one command per level, from the ancestor that has it down', () => {
    const t = tree();
    t.mkdir('/user.slice/u.scope/inner');
    const [io] = warn(t, '/user.slice/u.scope/inner');
    expect(io).toMatch(/charged to \/user.slice, the nearest ancestor/);
    expect(io).toContain(`enable it with: echo +io > '${t.dir}/user.slice/cgroup.subtree_control'; echo +io > '${t.dir}/user.slice/u.scope/cgroup.subtree_control'`); // quoted: the fake mount has a space
  });
  test('memory there, io not: only the io warning', () => {
    const t = tree();
    const w = warn(t, '/user.slice/u.scope');
    expect(w).toHaveLength(1);
    expect(w[0]).toMatch(/^the io controller is not enabled for \/user.slice\/u.scope.*charged to \/user.slice,/);
  });
  test('hybrid layout (blkio on v1, no io on v2): the hybrid warning only', () => {
    const t = tree({ blkioV1: true, rootControllers: 'cpu pids' });
    const w = warn(t, '/system.slice/db.service/worker');
    expect(w).toEqual([expect.stringMatching(/^this host runs a hybrid cgroup v1\/v2 layout with blkio on cgroup v1 \(.*\/blkio\).*only I\/O submitted directly \(e.g. O_DIRECT\) by tasks of \/system.slice\/db.service\/worker can match; page-cache writeback will not$/)]);
  });
  test('no io on cgroup v2 and no v1 blkio', () => {
    const t = tree({ rootControllers: 'cpu memory' });
    expect(warn(t, '/system.slice')).toEqual([expect.stringMatching(/^the io controller is not available on cgroup v2 \(.*cgroup.controllers has no "io"\)/)]);
  });
  test('memory not on cgroup v2: writeback is not attributed', () => {
    const t = tree({ rootControllers: 'cpu io pids' });
    expect(warn(t, '/system.slice/db.service')).toEqual([expect.stringMatching(/^the memory controller is not on cgroup v2 .*only I\/O submitted directly by tasks of \/system.slice\/db.service can match$/)]);
  });
});
