// An in-memory model of the kernel's block error injection (block/error-injection.c of
// 7.2) behind the blkinject backend's debugfs interface: each write is parsed as the
// kernel parses it (strsep on ",\n", match_token patterns, base-0 numbers, every EINVAL
// and ERANGE it returns), rules are kept newest first and listed in its format, and
// bio() walks them as __blk_error_inject() does. Plus a fake sysfs with a disk and a
// partition, and failures to inject (a write the kernel refuses, a disk that goes away).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { InjectionFiles, InjectionWriteError } from '../../agent/backends/blkinject/debugfs';

/** REQ_OP names (blk_op_name[] of 7.2). */
export const KERNEL_OPS = ['READ', 'WRITE', 'FLUSH', 'DISCARD', 'SECURE_ERASE', 'ZONE_RESET', 'ZONE_RESET_ALL', 'ZONE_OPEN', 'ZONE_CLOSE', 'ZONE_FINISH', 'ZONE_APPEND', 'WRITE_ZEROES', 'DRV_IN', 'DRV_OUT'];
/** blk_errors[] of 7.2: tag -> errno (OK, the 0 status, is no status to inject). */
export const KERNEL_STATUSES: Record<string, string> = {
  NOTSUPP: 'EOPNOTSUPP', TIMEOUT: 'ETIMEDOUT', NOSPC: 'ENOSPC', TRANSPORT: 'ENOLINK', TARGET: 'EREMOTEIO', RESV_CONFLICT: 'EBADE',
  MEDIUM: 'ENODATA', PROTECTION: 'EILSEQ', RESOURCE: 'ENOMEM', DEV_RESOURCE: 'EBUSY', AGAIN: 'EAGAIN', OFFLINE: 'ENODEV',
  DM_REQUEUE: 'EREMCHG', ZONE_OPEN_RESOURCE: 'ETOOMANYREFS', ZONE_ACTIVE_RESOURCE: 'EOVERFLOW', DURATION_LIMIT: 'ETIME', INVAL: 'EINVAL', IOERR: 'EIO',
};
const U64_MAX = (1n << 64n) - 1n;

export interface KRule {
  start: bigint;
  end: bigint;
  op: string;
  status: string;
  chance: number;
}

class Errno extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}

/** kstrtoull(s, 0): hex with 0x, octal with a leading 0, else decimal; null when not a number. */
function base0(s: string): bigint | null {
  if (/^0x[0-9a-f]+$/i.test(s)) return BigInt(s);
  if (/^0[0-7]*$/.test(s)) return BigInt(`0o${s.slice(1) || '0'}`);
  if (/^[1-9]\d*$/.test(s)) return BigInt(s);
  return null;
}

/** One write's buffer as blk_error_injection_parse_options() takes it. */
export function parseCommand(buf: string, rules: KRule[]): void {
  let action: 'add' | 'removeall' | null = null;
  let others = false;
  let op = 'LAST';
  let start = 0n;
  let nr = 0n;
  let status = 'OK';
  let chance = 1n;
  for (const p of buf.split(/[,\n]/)) {
    if (!p) continue;
    if (p === 'add' || p === 'removeall') {
      if (action) throw new Errno('EINVAL');
      action = p;
      continue;
    }
    const m = /^(op|start|nr_sectors|status|chance)=(.+)$/.exec(p);
    if (!m) throw new Errno('EINVAL'); // unknown parameter or missing value
    others = true;
    const [, k, v] = m;
    if (k === 'op') op = KERNEL_OPS.includes(v) ? v : 'LAST';
    else if (k === 'status') status = v in KERNEL_STATUSES ? v : 'OK';
    else {
      // %u takes the leading number (base 0) and must end the token
      const n = base0(v);
      if (n === null) throw new Errno('EINVAL');
      if (k === 'chance') {
        if (n > 0xffff_ffffn) throw new Errno('ERANGE');
        if (n === 0n) throw new Errno('EINVAL');
        chance = n;
      } else {
        if (n > U64_MAX) throw new Errno('ERANGE');
        if (k === 'start') start = n;
        else nr = n;
      }
    }
  }
  if (action === 'removeall') {
    if (others) throw new Errno('EINVAL');
    rules.length = 0;
    return;
  }
  if (action !== 'add' || op === 'LAST' || status === 'OK') throw new Errno('EINVAL');
  if (nr && U64_MAX - nr < start) throw new Errno('EINVAL');
  rules.unshift({ start, end: nr ? start + nr - 1n : U64_MAX, op, status, chance: Number(chance) });
}

export class FakeBlkInjection implements InjectionFiles {
  disks = new Map<string, KRule[]>();
  /** Every command written, in order, per disk. */
  writes: { disk: string; cmd: string }[] = [];
  /** Refuse the Nth write from now (0: the next) with this errno. */
  failWrite: { after: number; code: string } | null = null;
  /** Called before each write (tests look at the state dir then). */
  beforeWrite?: (disk: string, cmd: string) => void;
  /** The draw for chance > 1 (get_random_u32()). */
  random = () => 0;

  add(disk: string): void {
    this.disks.set(disk, []);
  }
  exists(disk: string): boolean {
    return this.disks.has(disk);
  }
  read(disk: string): string {
    const r = this.disks.get(disk);
    if (!r) throw Object.assign(new Error(`ENOENT: ${disk}`), { code: 'ENOENT' });
    return r.map((x) => `${x.start}:${x.end} op=${x.op},status=${x.status},chance=${x.chance}\n`).join('');
  }
  write(disk: string, commands: string[]): void {
    commands.forEach((cmd, i) => {
      this.beforeWrite?.(disk, cmd);
      const rules = this.disks.get(disk);
      if (!rules) throw new InjectionWriteError('ENOENT', i, cmd, `no such disk ${disk}`);
      if (this.failWrite && this.failWrite.after-- === 0) {
        const code = this.failWrite.code;
        this.failWrite = null;
        throw new InjectionWriteError(code, i, cmd, `the kernel refused "${cmd}" (${code})`);
      }
      try {
        parseCommand(cmd, rules);
      } catch (e) {
        throw new InjectionWriteError((e as Errno).code, i, cmd, `the kernel refused "${cmd}" (${(e as Errno).code})`);
      }
      this.writes.push({ disk, cmd });
    });
  }

  /** What __blk_error_inject() does with a bio: the status it ends it with, or null (passes). Sectors are the disk's. */
  bio(disk: string, op: string, sector: bigint, sectors: bigint): string | null {
    for (const r of this.disks.get(disk) ?? []) {
      if (r.op !== op) continue;
      if (sectors === 0n) continue; // zero-sized bios never match
      if (sector > r.end || sector + sectors <= r.start) continue;
      if (r.chance > 1 && this.random() % r.chance !== 0) continue;
      return r.status;
    }
    return null;
  }
}

/** A fake sysfs with disk `name` (7:M, `size` sectors) and its partitions. */
export function fakeSysfs(disks: { name: string; minor: number; size: number; diskseq?: number; parts?: { start: number; size: number }[] }[]): string {
  const sysfs = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-blk-sysfs-'));
  fs.mkdirSync(path.join(sysfs, 'dev', 'block'), { recursive: true });
  for (const d of disks) {
    const dir = path.join(sysfs, 'devices', 'virtual', 'block', d.name);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'dev'), `7:${d.minor}\n`);
    fs.writeFileSync(path.join(dir, 'size'), `${d.size}\n`);
    fs.writeFileSync(path.join(dir, 'diskseq'), `${d.diskseq ?? 9}\n`);
    fs.symlinkSync(dir, path.join(sysfs, 'dev', 'block', `7:${d.minor}`));
    (d.parts ?? []).forEach((p, i) => {
      const pdir = path.join(dir, `${d.name}p${i + 1}`);
      fs.mkdirSync(pdir);
      fs.writeFileSync(path.join(pdir, 'dev'), `259:${d.minor * 16 + i}\n`);
      fs.writeFileSync(path.join(pdir, 'partition'), `${i + 1}\n`);
      fs.writeFileSync(path.join(pdir, 'start'), `${p.start}\n`);
      fs.writeFileSync(path.join(pdir, 'size'), `${p.size}\n`);
      fs.symlinkSync(pdir, path.join(sysfs, 'dev', 'block', `259:${d.minor * 16 + i}`));
    });
  }
  return sysfs;
}

/** Sets disk `minor`'s diskseq (a new medium). */
export function setDiskseq(sysfs: string, minor: number, seq: number): void {
  fs.writeFileSync(path.join(fs.realpathSync(path.join(sysfs, 'dev', 'block', `7:${minor}`)), 'diskseq'), `${seq}\n`);
}
