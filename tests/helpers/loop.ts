// Real test disks for host and VM tests: tmpfs-backed loop devices (optionally
// partitioned with `losetup -P`) and direct I/O against them with dd.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface LoopDevice {
  path: string; // /dev/loopN
  major: number;
  minor: number;
  backing: string;
  /** Partitions in table order (empty if not partitioned). */
  partitions: { path: string; major: number; minor: number; start: number; size: number }[];
  sizeSectors: number;
  detach(): void;
}

/** Why root/loop tests cannot run here, or null if they can. */
export function loopUnavailableReason(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (loop devices, BPF)';
  if (!fs.existsSync('/dev/loop-control')) return 'no /dev/loop-control (loop driver missing)';
  return null;
}

function devNumbers(devPath: string): { major: number; minor: number } {
  const name = path.basename(devPath);
  const [major, minor] = fs.readFileSync(`/sys/class/block/${name}/dev`, 'utf8').trim().split(':').map(Number);
  return { major, minor };
}

/** Polls until `p` exists or `ms` have passed (synchronously, as createLoop is); whether it does. */
function waitForPath(p: string, ms: number): boolean {
  const deadline = Date.now() + ms;
  while (!fs.existsSync(p)) {
    if (Date.now() > deadline) return false;
    spawnSync('sleep', ['0.05']);
  }
  return true;
}

function scratchDir(): string {
  // /dev/shm is tmpfs on the host and in the VM; fall back to the OS temp dir.
  const base = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
  return fs.mkdtempSync(path.join(base, 'iofilter-test-'));
}

/**
 * Creates a loop device over a tmpfs file of `sizeMiB`. With `partitions`, writes an
 * msdos label with partitions of the given sizes in MiB (1 MiB aligned) and attaches
 * with -P so /dev/loopNpK exist.
 */
export function createLoop(sizeMiB: number, partitions: number[] = []): LoopDevice {
  const dir = scratchDir();
  const backing = path.join(dir, 'disk.img');
  execFileSync('truncate', ['-s', `${sizeMiB}M`, backing]);
  if (partitions.length) {
    const script = ['label: dos', ...partitions.map((mib) => `size=${mib}MiB, type=83`)].join('\n') + '\n';
    execFileSync('sfdisk', ['--quiet', backing], { input: script });
  }
  const args = ['-f', '--show', '--direct-io=on'];
  if (partitions.length) args.push('-P');
  let dev: string;
  try {
    dev = execFileSync('losetup', [...args, backing], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch {
    // --direct-io needs O_DIRECT on the backing file, which tmpfs may refuse
    dev = execFileSync('losetup', [...args.filter((a) => a !== '--direct-io=on'), backing], { encoding: 'utf8' }).trim();
  }
  const name = path.basename(dev);
  const parts: LoopDevice['partitions'] = [];
  if (partitions.length) {
    waitForPath(`/sys/class/block/${name}p1`, 1000); // short: partx below adds them when -P did not
    // A kernel without partition-table parsers (e.g. no CONFIG_MSDOS_PARTITION, as on
    // this project's CI hosts) ignores -P; partx reads the table itself and adds the
    // partitions with the BLKPG ioctl, which every kernel has.
    if (!fs.existsSync(`/sys/class/block/${name}p1`)) {
      try {
        execFileSync('partx', ['--add', dev], { stdio: 'pipe' });
      } catch (e) {
        if (!fs.existsSync(`/sys/class/block/${name}p1`)) throw e; // else the kernel's own scan was just slow
      }
    }
  }
  for (let i = 1; i <= partitions.length; i++) {
    const p = `${dev}p${i}`;
    const sys = `/sys/class/block/${name}p${i}`;
    waitForPath(sys, 30_000);
    parts.push({
      path: p,
      ...devNumbers(p),
      start: Number(fs.readFileSync(`${sys}/start`, 'utf8')),
      size: Number(fs.readFileSync(`${sys}/size`, 'utf8')),
    });
  }
  for (const p of parts) if (!waitForPath(p.path, 30_000)) throw new Error(`${p.path} did not appear within 30 s (udev?)`);
  return {
    path: dev,
    ...devNumbers(dev),
    backing,
    partitions: parts,
    sizeSectors: Number(fs.readFileSync(`/sys/class/block/${name}/size`, 'utf8')),
    detach() {
      spawnSync('losetup', ['-d', dev]);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface IoResult {
  ok: boolean;
  /** dd's stderr, e.g. "Input/output error" on EIO. */
  stderr: string;
  eio: boolean;
  /** The dd process's pid: what an event for this I/O names. */
  pid: number;
}

/**
 * One direct I/O (a single bio on a loop device) of `count` 512-byte sectors at
 * sector `sector` of `dev`. Needs the device's logical block size to be 512 (loop default).
 */
export function directIo(dev: string, op: 'read' | 'write', sector: number, count = 8): IoResult {
  const bytes = sector * 512;
  const args =
    op === 'read'
      ? [`if=${dev}`, 'of=/dev/null', 'iflag=direct,skip_bytes', `skip=${bytes}`]
      : ['if=/dev/zero', `of=${dev}`, 'oflag=direct,seek_bytes', `seek=${bytes}`, 'conv=notrunc'];
  const r = spawnSync('dd', [...args, `bs=${count * 512}`, 'count=1', 'status=none'], { encoding: 'utf8' });
  const stderr = (r.stderr ?? '').trim();
  return { ok: r.status === 0, stderr, eio: /Input\/output error/.test(stderr), pid: r.pid ?? 0 };
}
