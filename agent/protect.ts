// Protected devices: the block devices under the filesystem holding / and the agent's
// own files. A filter that could fail their I/O is refused unless the config allows
// the device (protect.allow) - this tool breaks disks on purpose, not its own host.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as native from '../native';
import { DeviceInfo, resolveDevice, splitDev } from './devices';
import { precondition } from './errors';

export interface Extent {
  disk: { major: number; minor: number };
  start: bigint; // absolute whole-disk sectors, inclusive
  end: bigint;
  reason: string; // "holds / (ext4 on /dev/vda)"
  device: string; // "254:0 (vda)"
}

export interface Mount {
  dev: string; // MAJ:MIN as in mountinfo
  mountPoint: string;
  fsType: string;
  source: string;
}

/** The mounts of /proc/self/mountinfo (or another mountinfo file), in its order. */
export function mounts(mountinfo = '/proc/self/mountinfo'): Mount[] {
  return fs
    .readFileSync(mountinfo, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const f = line.split(' ');
      const dash = f.indexOf('-');
      return { dev: f[2], mountPoint: f[4].replace(/\\040/g, ' '), fsType: f[dash + 1], source: f[dash + 2] };
    });
}

/** The mount that holds `file` (longest mount-point prefix). */
export function mountOf(file: string, all: Mount[]): Mount | undefined {
  let best: Mount | undefined;
  for (const m of all) {
    const mp = m.mountPoint.endsWith('/') ? m.mountPoint : m.mountPoint + '/';
    if ((file === m.mountPoint || file.startsWith(mp)) && (!best || m.mountPoint.length >= best.mountPoint.length)) best = m;
  }
  return best;
}

/** A device and everything it is stacked on (dm, md: /sys/dev/block/M:N/slaves). */
function withSlaves(devno: string, seen = new Set<string>()): string[] {
  if (seen.has(devno)) return [];
  seen.add(devno);
  const out = [devno];
  const slaves = `/sys/dev/block/${devno}/slaves`;
  if (fs.existsSync(slaves)) {
    for (const s of fs.readdirSync(slaves)) {
      try {
        out.push(...withSlaves(fs.readFileSync(path.join(slaves, s, 'dev'), 'utf8').trim(), seen));
      } catch {
        /* a slave that went away */
      }
    }
  }
  return out;
}

/** Swap devices in use (/proc/swaps), as MAJ:MIN; swap files give their filesystem's device. */
export function activeSwaps(swaps = '/proc/swaps'): { dev: string; file: string }[] {
  if (!fs.existsSync(swaps)) return [];
  const out: { dev: string; file: string }[] = [];
  for (const line of fs.readFileSync(swaps, 'utf8').split('\n').slice(1)) {
    const file = line.split(/\s+/)[0];
    if (!file) continue;
    try {
      const st = fs.statSync(file.replace(/\\040/g, ' '), { bigint: true });
      const d = splitDev(st.isBlockDevice() ? st.rdev : st.dev);
      out.push({ dev: `${d.major}:${d.minor}`, file });
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Extents that must not be filtered: /, /boot, active swap and the agent's own files (its state dir too), minus `allow`; dm and md stacks down to their disks. */
export function protectedExtents(ownFiles: string[], allow: string[]): Extent[] {
  const all = mounts();
  const allowed = new Set(allow.map((a) => {
    const d = resolveDevice(a);
    return `${d.major}:${d.minor}`;
  }));
  const out = new Map<string, Extent>();
  const targets: [string, string][] = [['/', 'holds /'], ['/boot', 'holds /boot'], ...ownFiles.map((f): [string, string] => [path.resolve(f), `holds the agent's files (${f})`])];
  const sources: { dev: string; why: string; m: Mount }[] = [];
  for (const [file, why] of targets) {
    const m = mountOf(file, all);
    if (m) sources.push({ dev: m.dev, why, m });
  }
  for (const s of activeSwaps()) sources.push({ dev: s.dev, why: 'is active swap', m: { dev: s.dev, mountPoint: '[swap]', fsType: 'swap', source: s.file } });
  for (const { dev, why, m } of sources) {
    if (dev.startsWith('0:')) continue; // not on a block device (tmpfs, 9p, overlay)
    for (const devno of withSlaves(dev)) {
      if (allowed.has(devno) || out.has(devno)) continue;
      let d: DeviceInfo;
      try {
        d = resolveDevice(devno);
      } catch {
        continue;
      }
      out.set(devno, {
        disk: d.disk,
        start: d.start,
        end: d.start + d.size - 1n,
        reason: `${why} (${m.fsType} on ${m.source} at ${m.mountPoint})`,
        device: `${devno} (${d.name})`,
      });
    }
  }
  return [...out.values()];
}

/** Throws FAILED_PRECONDITION if any range of `spec` could fail I/O of a protected extent. */
export function checkProtected(spec: native.FilterSpec, dev: DeviceInfo, extents: Extent[]): void {
  const ranges = spec.ranges.length ? spec.ranges : [{ start: 0n, end: dev.size - 1n }];
  for (const x of extents) {
    if (x.disk.major !== spec.disk.major || x.disk.minor !== spec.disk.minor) continue;
    for (const r of ranges) {
      const start = spec.offset + r.start;
      const end = spec.offset + r.end;
      if (start <= x.end && end >= x.start)
        throw precondition(
          `device ${dev.major}:${dev.minor} (${dev.name}) is protected: sectors ${r.start}-${r.end} overlap ${x.device}, which ${x.reason}; ` +
            `add it to protect.allow in the agent config to allow this`,
        );
    }
  }
}
