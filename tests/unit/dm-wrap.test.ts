// wrap's "in use" check on a fake sysfs: a device, or any partition of it, that is
// mounted, held (a dm/md device on it) or active swap cannot be wrapped.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { inUse } from '../../agent/backends/wrap';
import { fakeSysfs } from '../helpers/fake-kernel';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-wrap-'));
const mountinfo = (dev: string) => {
  const f = path.join(dir, `mi-${dev.replace(':', '_')}`);
  fs.writeFileSync(f, `22 1 ${dev} / /mnt/data rw,relatime shared:1 - ext4 /dev/x rw\n`);
  return f;
};
const noSwap = path.join(dir, 'swaps');
fs.writeFileSync(noSwap, 'Filename\tType\tSize\tUsed\tPriority\n');

test('free: null; a mounted partition makes its disk busy too; the partition alone is busy', () => {
  const sys = fakeSysfs();
  expect(inUse('7:0', sys, mountinfo('9:9'), noSwap)).toBeNull();
  expect(inUse('7:0', sys, mountinfo('7:1'), noSwap)).toBe('loop0p1 is mounted at /mnt/data (ext4)');
  expect(inUse('7:1', sys, mountinfo('7:1'), noSwap)).toBe('loop0p1 is mounted at /mnt/data (ext4)');
  expect(inUse('7:1', sys, mountinfo('7:0'), noSwap)).toBeNull();
});

test('held: a holder of the disk or of a partition', () => {
  const sys = fakeSysfs();
  const part = fs.realpathSync(path.join(sys, 'dev', 'block', '7:1'));
  fs.mkdirSync(path.join(part, 'holders', 'dm-3'), { recursive: true });
  expect(inUse('7:0', sys, mountinfo('9:9'), noSwap)).toBe('loop0p1 is held by dm-3');
  expect(inUse('7:1', sys, mountinfo('9:9'), noSwap)).toBe('loop0p1 is held by dm-3');
});
