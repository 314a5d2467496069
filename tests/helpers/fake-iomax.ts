// The kernel's io.max for unit tests (block/blk-throttle.c tg_set_limit and
// tg_prfill_limit, blkcg_conf_open_bdev, written out here on their own so the backend's
// parser is not tested with itself): a write merges the keys it names into the device's
// limits, "max" or U64_MAX/UINT_MAX is no limit, 0 is ERANGE, 1 and unknown keys are
// EINVAL, a partition or unknown device is ENODEV, and a device whose limits are all
// max has no line. Also creates the io.max files the fake cgroup tree lacks.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { IoMaxFiles } from '../../agent/backends/throttle/backend';

type L = [bigint, bigint, bigint, bigint]; // rbps wbps riops wiops; max = U64_MAX / UINT_MAX
const U64 = (1n << 64n) - 1n;
const U32 = (1n << 32n) - 1n;
const MAX: L = [U64, U64, U32, U32];

const errno = (code: string, msg: string) => Object.assign(new Error(`${code}: ${msg}`), { code });

export class FakeIoMax implements IoMaxFiles {
  readonly files = new Map<string, Map<string, L>>();
  writes: { file: string; line: string }[] = [];
  /** Called before a write is applied; throw to fail it. */
  beforeWrite?: (file: string, line: string) => void;

  constructor(private readonly sysfs: string) {}

  /** Gives every cgroup of the tree with the io controller an io.max (the root has none), as the kernel does. */
  populate(cgroupRoot: string): void {
    const walk = (dir: string, root: boolean) => {
      const ctl = fs.readFileSync(path.join(dir, 'cgroup.controllers'), 'utf8').split(/\s+/);
      if (!root && ctl.includes('io')) fs.writeFileSync(path.join(dir, 'io.max'), '');
      for (const d of fs.readdirSync(dir, { withFileTypes: true })) if (d.isDirectory()) walk(path.join(dir, d.name), false);
    };
    walk(cgroupRoot, true);
  }

  read(file: string): string {
    if (!fs.existsSync(file)) throw errno('ENOENT', file);
    const out: string[] = [];
    for (const [dev, l] of this.files.get(file) ?? []) {
      const s = l.map((v, i) => (v === MAX[i] ? 'max' : String(v)));
      out.push(`${dev} rbps=${s[0]} wbps=${s[1]} riops=${s[2]} wiops=${s[3]}\n`);
    }
    return out.join('');
  }

  write(file: string, line: string): void {
    if (!fs.existsSync(file)) throw errno('ENOENT', file);
    this.beforeWrite?.(file, line);
    const [dev, ...toks] = line.trim().split(/\s+/);
    const d = path.join(this.sysfs, 'dev', 'block', dev);
    if (!fs.existsSync(d) || fs.existsSync(path.join(d, 'partition'))) throw errno('ENODEV', 'No such device');
    const m = this.files.get(file) ?? new Map<string, L>();
    const v: L = [...(m.get(dev) ?? MAX)] as L;
    for (const t of toks) {
      const [k, s] = t.split('=');
      const val = s === 'max' ? U64 : /^\d+$/.test(s ?? '') ? BigInt(s) : null;
      if (val === null) throw errno('EINVAL', t);
      if (val === 0n) throw errno('ERANGE', t);
      const i = ['rbps', 'wbps', 'riops', 'wiops'].indexOf(k);
      if (i < 0 || val < 2n) throw errno('EINVAL', t);
      v[i] = i >= 2 && val > U32 ? U32 : val;
    }
    this.writes.push({ file, line });
    if (v.every((x, i) => x === MAX[i])) m.delete(dev);
    else m.set(dev, v);
    this.files.set(file, m);
  }
}
