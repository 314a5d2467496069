// Whether cgroup v2 io.max works on this host, and why a cgroup cannot be throttled:
// cgroup2 mounted with the io controller at its root, the kernel's blk-throttle
// (without CONFIG_BLK_DEV_THROTTLING no cgroup has io.max), and the io controller
// enabled down to the cgroup (else it has no io.max; say which subtree_control needs +io).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Cgroup2Mount } from '../../cgroup';

const words = (f: string): string[] => {
  try {
    return fs.readFileSync(f, 'utf8').split(/\s+/).filter(Boolean);
  } catch {
    return [];
  }
};
const parts = (p: string) => p.split('/').filter(Boolean);
const shq = (p: string) => (/^[\w@%+=:,./-]+$/.test(p) ? p : `'${p.replace(/'/g, `'\\''`)}'`);

/** Why the host has no io.max at all, or null. `kallsyms` tells blk-throttle apart when no cgroup shows io.max yet. */
export function hostRefusal(m: Cgroup2Mount, kallsyms = '/proc/kallsyms'): { reason: string | null; note: string } {
  if (!words(path.join(m.dir, 'cgroup.controllers')).includes('io'))
    return {
      reason:
        `the io controller is not available on cgroup v2 (${path.join(m.dir, 'cgroup.controllers')} has no "io")` +
        (m.blkioV1 ? `: it is bound to cgroup v1 blkio at ${m.blkioV1} (boot with systemd.unified_cgroup_hierarchy=1 for cgroup v2 io)` : ''),
      note: '',
    };
  const t = throttling(m, kallsyms);
  if (t === false) return { reason: 'this kernel has no blk-throttle (CONFIG_BLK_DEV_THROTTLING is off): no cgroup has io.max', note: '' };
  return { reason: null, note: t === null ? 'blk-throttle not confirmed (no cgroup has io enabled yet, /proc/kallsyms unreadable)' : '' };
}

/** true/false when known: a first-level cgroup with io shows io.max exactly when blk-throttle is built; else its symbols. */
function throttling(m: Cgroup2Mount, kallsyms: string): boolean | null {
  let dirs: fs.Dirent[] = [];
  try {
    dirs = fs.readdirSync(m.dir, { withFileTypes: true }).filter((d) => d.isDirectory());
  } catch {
    /* unreadable: fall through */
  }
  for (const d of dirs) {
    const dir = path.join(m.dir, d.name);
    if (words(path.join(dir, 'cgroup.controllers')).includes('io')) return fs.existsSync(path.join(dir, 'io.max'));
  }
  try {
    return /^\S+ \S (__)?blk_throtl_/m.test(fs.readFileSync(kallsyms, 'utf8'));
  } catch {
    return null;
  }
}

/** Why the cgroup at `rel` (below the mount) has no io.max, or null when it has one. */
export function cgroupRefusal(m: Cgroup2Mount, rel: string): string | null {
  const r = parts(rel);
  if (!r.length) return 'the root cgroup: the kernel does not throttle it (it has no io.max); scope the filter to a child cgroup';
  if (!words(path.join(m.dir, ...r, 'cgroup.controllers')).includes('io')) {
    // the nearest ancestor that has io; each level from it down must enable it for its children
    let a = r.length - 1;
    while (a > 0 && !words(path.join(m.dir, ...r.slice(0, a), 'cgroup.controllers')).includes('io')) a--;
    const cmds = r.slice(a).map((_x, i) => `echo +io > ${shq(path.join(m.dir, ...r.slice(0, a + i), 'cgroup.subtree_control'))}`);
    return (
      `the io controller is not enabled for /${r.join('/')} (its cgroup.controllers has no "io", so it has no io.max): ` +
      `${path.join(m.dir, ...r.slice(0, a), 'cgroup.subtree_control')} needs +io; enable it with: ${cmds.join('; ')}`
    );
  }
  if (!fs.existsSync(path.join(m.dir, ...r, 'io.max'))) return 'this kernel has no blk-throttle (CONFIG_BLK_DEV_THROTTLING is off): the cgroup has the io controller but no io.max';
  return null;
}
