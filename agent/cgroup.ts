// Cgroup scopes for filters: finds this host's cgroup v2 hierarchy in mountinfo,
// resolves a cgroup path, id or pid to {id, level, path}, and says what would keep a
// scoped filter from seeing the cgroup's I/O (io/memory controllers not enabled for
// it, blkio on cgroup v1). The kernel program matches by id and level only.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as native from '../native';
import { invalid, notFound, precondition } from './errors';

/** Where the host's facts are read; tests point these at a fake tree. */
export interface CgroupHost {
  mountinfo?: string; // default /proc/self/mountinfo
  proc?: string; // default /proc
  /** Cgroups visited at most when looking a cgroup up by id or by pid. Default 100000. */
  maxWalk?: number;
}

export interface Cgroup2Mount {
  /** The mount point, e.g. /sys/fs/cgroup (or /sys/fs/cgroup/unified in a hybrid layout). */
  dir: string;
  /** Cgroup namespace levels between the agent's namespace root and the hierarchy root (mountinfo shows "/../.."). */
  nsDepth: number;
  /** Mount point of a cgroup v1 hierarchy that has blkio (hybrid v1/v2 layout), else null. */
  blkioV1: string | null;
}

/** A cgroup as a filter scope: its id and level go to the kernel, path and pid to Status. */
export interface ResolvedCgroup {
  id: bigint; // inode number of its directory in cgroupfs (= the kernel's cgroup id)
  level: number; // depth below the hierarchy root (root = 0)
  path: string; // relative to the cgroup2 mount, starting with "/"
  fromPid?: number;
}

export type CgroupQuery = { path: string } | { id: bigint } | { pid: number };

interface MountLine {
  root: string;
  point: string;
  fsType: string;
  superOpts: string[];
}

const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));

function parseMountinfo(text: string): MountLine[] {
  const out: MountLine[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const dash = f.indexOf('-', 6);
    if (dash < 0) continue;
    out.push({ root: unescape(f[3]), point: unescape(f[4]), fsType: f[dash + 1], superOpts: (f[dash + 3] ?? '').split(',') });
  }
  return out;
}

const parts = (p: string) => p.split('/').filter((c) => c && c !== '.');
/** A path as a shell word (the warnings carry commands to paste). */
const shq = (p: string) => (/^[\w@%+=:,./-]+$/.test(p) ? p : `'${p.replace(/'/g, `'\\''`)}'`);

export class CgroupResolver {
  private readonly mountinfo: string;
  private readonly proc: string;
  private readonly maxWalk: number;

  constructor(host: CgroupHost = {}) {
    this.mountinfo = host.mountinfo ?? '/proc/self/mountinfo';
    this.proc = host.proc ?? '/proc';
    this.maxWalk = host.maxWalk ?? 100_000;
  }

  /**
   * The cgroup2 mount that shows the whole hierarchy (its directory is the root cgroup,
   * which alone has no cgroup.type). Only the top mount at each mount point counts.
   */
  mount(): Cgroup2Mount {
    const top = new Map<string, MountLine>();
    for (const m of parseMountinfo(fs.readFileSync(this.mountinfo, 'utf8'))) top.set(m.point, m);
    const v2 = [...top.values()].filter((m) => m.fsType === 'cgroup2');
    const blkio = [...top.values()].find((m) => m.fsType === 'cgroup' && m.superOpts.includes('blkio'));
    const whole = v2.find((m) => /^(\/\.\.)*\/?$/.test(m.root) && !fs.existsSync(path.join(m.point, 'cgroup.type')));
    if (!whole) {
      if (v2.length)
        throw precondition(
          `the cgroup2 mount at ${v2[0].point} shows only a sub-tree of the hierarchy (e.g. a container's own cgroup namespace), so other cgroups cannot be named; ` +
            `give the agent the host's whole cgroup2 tree (e.g. a hostPath mount of /sys/fs/cgroup)`,
        );
      throw precondition('no cgroup v2 hierarchy is mounted on this host (no cgroup2 entry in mountinfo): cgroup-scoped filters need cgroup v2');
    }
    return { dir: whole.point, nsDepth: parts(whole.root).length, blkioV1: blkio?.point ?? null };
  }

  /** Resolves a path, an id or a pid; NOT_FOUND / INVALID_ARGUMENT name the field and value. */
  resolve(q: CgroupQuery, m: Cgroup2Mount = this.mount()): ResolvedCgroup {
    if ('path' in q) return this.byPath(q.path, m);
    if ('id' in q) return this.byId(q.id, m);
    return { ...this.byRel(this.relOfPid(q.pid, m), m, `pid: ${q.pid}`), fromPid: q.pid };
  }

  /** A path as given (absolute under the mount, or relative to its root) -> components below the root. */
  relOfPath(p: string, m: Cgroup2Mount): string[] {
    const field = `cgroup_path: "${p}"`;
    if (p.length > 4096 || p.includes('\0')) throw invalid(`${field} is not a valid path`);
    const given = parts(p);
    if (given.includes('..')) throw invalid(`${field} must not contain ".."`);
    const mp = parts(m.dir);
    if (p.startsWith('/') && mp.every((c, i) => given[i] === c)) return given.slice(mp.length);
    if (p.startsWith('/') && !fs.existsSync(path.join(m.dir, ...given)) && (p.startsWith('/sys/') || fs.existsSync(p)))
      throw invalid(`${field} is outside the cgroup2 mount ${m.dir}: give a path under it, or relative to it (e.g. /system.slice/db.service)`);
    return given;
  }

  private byPath(p: string, m: Cgroup2Mount): ResolvedCgroup {
    return this.byRel(this.relOfPath(p, m), m, `cgroup_path: "${p}"`);
  }

  private byRel(rel: string[], m: Cgroup2Mount, field: string): ResolvedCgroup {
    const dir = path.join(m.dir, ...rel);
    let st: fs.BigIntStats;
    try {
      st = fs.lstatSync(dir, { bigint: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw notFound(`${field}: no cgroup ${dir}`);
      throw invalid(`${field}: cannot read ${dir}: ${(e as Error).message}`);
    }
    if (!st.isDirectory() || st.dev !== fs.statSync(m.dir, { bigint: true }).dev)
      throw invalid(`${field}: ${dir} is not a cgroup directory`);
    return { id: st.ino, level: rel.length, path: '/' + rel.join('/') };
  }

  /** Walks the hierarchy breadth-first (bounded) for the directory whose inode is `id`. */
  private byId(id: bigint, m: Cgroup2Mount): ResolvedCgroup {
    let seen = 0;
    let found: string[] | null = null;
    this.walk(m, (rel, st) => {
      seen++;
      if (st.ino === id) found = rel;
      return found === null && seen < this.maxWalk;
    });
    if (!found) {
      const bound = seen >= this.maxWalk ? ` (searched the first ${seen} cgroups; give cgroup_path instead)` : '';
      throw notFound(`cgroup_id: ${id}: no cgroup with this id under ${m.dir}${bound}`);
    }
    return this.byRel(found, m, `cgroup_id: ${id}`);
  }

  /** Calls `visit` for each cgroup below the mount, breadth-first, until it returns false. */
  private walk(m: Cgroup2Mount, visit: (rel: string[], st: fs.BigIntStats) => boolean, maxDepth = Infinity): void {
    const queue: string[][] = [[]];
    while (queue.length) {
      const rel = queue.shift()!;
      let st: fs.BigIntStats;
      let names: fs.Dirent[];
      try {
        st = fs.lstatSync(path.join(m.dir, ...rel), { bigint: true });
        names = rel.length < maxDepth ? fs.readdirSync(path.join(m.dir, ...rel), { withFileTypes: true }) : [];
      } catch {
        continue; // removed while we walked
      }
      if (!visit(rel, st)) return;
      for (const d of names) if (d.isDirectory()) queue.push([...rel, d.name]);
    }
  }

  /**
   * A pid's cgroup from /proc/PID/cgroup ("0::/path"), which is relative to the agent's
   * cgroup namespace root. In a private namespace (mountinfo root "/../..") the levels
   * above that root are unnamed there: the cgroup is found below the mount by the
   * named part of its path and the pid's presence in cgroup.procs.
   */
  private relOfPid(pid: number, m: Cgroup2Mount): string[] {
    let text: string;
    try {
      text = fs.readFileSync(path.join(this.proc, String(pid), 'cgroup'), 'utf8');
    } catch {
      throw notFound(`pid: ${pid}: no such process in the agent's pid namespace`);
    }
    const line = text.split('\n').find((l) => l.startsWith('0::'));
    if (!line) throw notFound(`pid: ${pid}: no cgroup v2 entry ("0::") in ${path.join(this.proc, String(pid), 'cgroup')}`);
    const p = line.slice(3).split('/').filter(Boolean);
    const up = p.findIndex((c) => c !== '..');
    const j = up < 0 ? p.length : up;
    const named = p.slice(j);
    if (j === m.nsDepth) return named;
    if (j > m.nsDepth) throw notFound(`pid: ${pid}: its cgroup ${line.slice(3)} is above the cgroup2 mount ${m.dir}`);
    let hit: string[] | null = null;
    let seen = 0;
    this.walk(m, (rel) => {
      seen++;
      if (rel.length === m.nsDepth - j && this.holds([...rel, ...named], pid, m)) hit = [...rel, ...named];
      return hit === null && seen < this.maxWalk;
    }, m.nsDepth - j);
    if (!hit) throw notFound(`pid: ${pid}: its cgroup ${line.slice(3)} (relative to the agent's cgroup namespace) was not found under ${m.dir}`);
    return hit;
  }

  private holds(rel: string[], pid: number, m: Cgroup2Mount): boolean {
    for (const f of ['cgroup.procs', 'cgroup.threads']) {
      try {
        if (fs.readFileSync(path.join(m.dir, ...rel, f), 'utf8').split('\n').includes(String(pid))) return true;
      } catch {
        /* not there */
      }
    }
    return false;
  }

  private controllers(rel: string[], m: Cgroup2Mount): string[] {
    try {
      return fs.readFileSync(path.join(m.dir, ...rel, 'cgroup.controllers'), 'utf8').trim().split(/\s+/);
    } catch {
      return [];
    }
  }

  /**
   * What would keep a filter scoped to `c` from seeing its I/O, for SetFilterResponse.warnings:
   * blkio on cgroup v1, the io controller missing from cgroup v2, or the io / memory
   * controllers not enabled down to this cgroup.
   */
  warnings(c: ResolvedCgroup, m: Cgroup2Mount = this.mount()): string[] {
    if (!this.controllers([], m).includes('io')) {
      if (m.blkioV1)
        return [
          `this host runs a hybrid cgroup v1/v2 layout with blkio on cgroup v1 (${m.blkioV1}): block I/O is charged through v1 blkio, which iofilter does not read, ` +
            `so only I/O submitted directly (e.g. O_DIRECT) by tasks of ${c.path} can match; page-cache writeback will not`,
        ];
      return [
        `the io controller is not available on cgroup v2 (${path.join(m.dir, 'cgroup.controllers')} has no "io"): ` +
          `only I/O submitted directly by tasks of ${c.path} can match; page-cache writeback will not`,
      ];
    }
    const rel = parts(c.path);
    const out: string[] = [];
    const memoryOnV2 = this.controllers([], m).includes('memory');
    if (!memoryOnV2)
      out.push(
        `the memory controller is not on cgroup v2 (${path.join(m.dir, 'cgroup.controllers')} has no "memory"): page-cache writeback is not attributed to cgroups ` +
          `(cgroup writeback needs memory and io on cgroup v2), so only I/O submitted directly by tasks of ${c.path} can match`,
      );
    for (const ctl of memoryOnV2 ? ['io', 'memory'] : ['io']) {
      if (this.controllers(rel, m).includes(ctl)) continue;
      // the nearest ancestor that has the controller; each level from it down must enable it for its children
      let a = rel.length - 1;
      while (a > 0 && !this.controllers(rel.slice(0, a), m).includes(ctl)) a--;
      const anc = '/' + rel.slice(0, a).join('/');
      const cmds = rel.slice(a).map((_x, i) => `echo +${ctl} > ${shq(path.join(m.dir, ...rel.slice(0, a + i), 'cgroup.subtree_control'))}`);
      out.push(
        ctl === 'io'
          ? `the io controller is not enabled for ${c.path} (its cgroup.controllers has no "io"): its I/O is charged to ${anc}, the nearest ancestor that has it, ` +
              `and this filter will not see it as ${c.path}'s; enable it with: ${cmds.join('; ')}`
          : `the memory controller is not enabled for ${c.path}: its page-cache writeback is charged to ${anc}, not to it (cgroup writeback needs memory and io on cgroup v2), ` +
              `so only its direct I/O can match; enable it with: ${cmds.join('; ')}`,
      );
    }
    return out;
  }

  /**
   * The filter keys a DeleteFilter scope names on `device`. A cgroup id is used as is,
   * so a filter outlives its cgroup; a path that no longer resolves matches the path
   * the filters were set with.
   */
  deleteKeys(q: CgroupQuery, device: native.Device, filters: native.FilterInfo[]): native.FilterKey[] {
    const s = this.deleteScope(q);
    if ('id' in s) return [{ device, cgroupId: s.id }];
    const same = (d: native.Device) => d.major === device.major && d.minor === device.minor;
    return filters.filter((f) => f.cgroup && same(f.device) && f.meta.cgroupPath === s.path).map((f) => ({ device, cgroupId: f.cgroup!.id }));
  }

  /** What a DeleteFilter scope names: a cgroup id, or the path filters were set with when it no longer resolves. */
  deleteScope(q: CgroupQuery): { id: bigint } | { path: string } {
    if ('id' in q) return { id: q.id };
    if ('pid' in q) return { id: this.resolve(q).id };
    const m = this.mount();
    const rel = this.relOfPath(q.path, m);
    if (fs.existsSync(path.join(m.dir, ...rel))) return { id: this.byRel(rel, m, `cgroup_path: "${q.path}"`).id };
    return { path: '/' + rel.join('/') };
  }
}
