// A cgroup v2 hierarchy in a temp directory for unit tests: a mountinfo that mounts it
// as cgroup2 (the mount point has a space in its name, escaped as mountinfo does), each
// cgroup's cgroup.controllers derived from its parent's subtree_control as the kernel
// does, and a /proc with pids in it. Ids are the directories' real inode numbers, as in
// cgroupfs.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CgroupResolver } from '../../agent/cgroup';

export interface FakeCgroups {
  /** The cgroup2 mount point (the hierarchy root). */
  dir: string;
  mountinfo: string;
  proc: string;
  resolver: CgroupResolver;
  /** The id (inode number) of a cgroup, by its path below the root. */
  id(rel: string): bigint;
  /** Makes `rel` a cgroup; its children get `subtree` (minus what it lacks itself). */
  mkdir(rel: string, subtree?: string): void;
  /** Puts a process into a cgroup: its /proc/PID/cgroup reads `0::<shown>` (default `rel`). */
  addPid(pid: number, rel: string, shown?: string): void;
  cleanup(): void;
}

export interface FakeCgroupOptions {
  /** What cgroup v2 offers at its root (default "cpu io memory pids"). */
  rootControllers?: string;
  /** Also mount a cgroup v1 hierarchy with blkio (a hybrid layout). */
  blkioV1?: boolean;
  /** The mount's root as mountinfo shows it: "/" (default), "/../.." in a private cgroup namespace. */
  mountRoot?: string;
  /** Omit the cgroup2 mount altogether. */
  noCgroup2?: boolean;
}

/**
 * The tree: / (subtree "cpu io memory pids"), /system.slice (subtree "io memory"),
 * /system.slice/db.service (subtree none), /system.slice/db.service/worker,
 * /user.slice (subtree "memory"), /user.slice/u.scope, /kubepods.slice/pod-a/ctr-a and
 * /kubepods.slice/pod-b/ctr-b (io and memory all the way).
 */
export function fakeCgroups(o: FakeCgroupOptions = {}): FakeCgroups {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-cg-'));
  const dir = path.join(base, 'cg root');
  const proc = path.join(base, 'proc');
  const mountinfo = path.join(base, 'mountinfo');
  fs.mkdirSync(proc);
  const esc = (p: string) => p.replace(/ /g, '\\040');
  const lines = ['22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,errors=remount-ro'];
  if (!o.noCgroup2) lines.push(`31 22 0:28 ${o.mountRoot ?? '/'} ${esc(dir)} rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate`);
  if (o.blkioV1) lines.push(`38 22 0:35 / ${esc(path.join(base, 'blkio'))} rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,blkio`);
  fs.writeFileSync(mountinfo, lines.join('\n') + '\n');

  const words = (f: string) => fs.readFileSync(f, 'utf8').split(/\s+/).filter(Boolean);
  const mkdir = (rel: string, subtree = '') => {
    const d = path.join(dir, rel);
    const isRoot = rel === '/';
    fs.mkdirSync(d, { recursive: true });
    const parent = path.dirname(d);
    const controllers = isRoot ? (o.rootControllers ?? 'cpu io memory pids') : words(path.join(parent, 'cgroup.subtree_control')).filter((c) => words(path.join(parent, 'cgroup.controllers')).includes(c)).join(' ');
    fs.writeFileSync(path.join(d, 'cgroup.controllers'), controllers + '\n');
    fs.writeFileSync(path.join(d, 'cgroup.subtree_control'), subtree.split(' ').filter((c) => controllers.split(' ').includes(c)).join(' ') + '\n');
    fs.writeFileSync(path.join(d, 'cgroup.procs'), '');
    if (!isRoot) fs.writeFileSync(path.join(d, 'cgroup.type'), 'domain\n'); // the root cgroup alone has none
  };
  mkdir('/', 'cpu io memory pids');
  mkdir('/system.slice', 'io memory');
  mkdir('/system.slice/db.service');
  mkdir('/system.slice/db.service/worker');
  mkdir('/user.slice', 'memory');
  mkdir('/user.slice/u.scope');
  mkdir('/kubepods.slice', 'io memory');
  for (const p of ['a', 'b']) {
    mkdir(`/kubepods.slice/pod-${p}`, 'io memory');
    mkdir(`/kubepods.slice/pod-${p}/ctr-${p}`);
  }
  return {
    dir,
    mountinfo,
    proc,
    resolver: new CgroupResolver({ mountinfo, proc }),
    id: (rel) => fs.statSync(path.join(dir, rel), { bigint: true }).ino,
    mkdir,
    addPid: (pid, rel, shown = rel) => {
      fs.appendFileSync(path.join(dir, rel, 'cgroup.procs'), `${pid}\n`);
      fs.mkdirSync(path.join(proc, String(pid)), { recursive: true });
      fs.writeFileSync(path.join(proc, String(pid), 'cgroup'), `0::${shown}\n`);
    },
    cleanup: () => fs.rmSync(base, { recursive: true, force: true }),
  };
}
