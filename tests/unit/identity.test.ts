// agent/identity.ts over a fake sysfs: with diskseq (5.15+) the bound number decides;
// without it, the fingerprint taken when the filter was set (size, a loop device's
// backing file) does, and a gone disk is reported as gone.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type * as native from '../../native';
import { Media, mediumOf } from '../../agent/identity';

let sys: string;
let files: string;
beforeEach(() => {
  sys = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-sys-'));
  files = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-files-'));
});
afterEach(() => {
  fs.rmSync(sys, { recursive: true, force: true });
  fs.rmSync(files, { recursive: true, force: true });
});

function disk(attrs: Record<string, string>): void {
  const dir = path.join(sys, 'dev', 'block', '7:0');
  fs.rmSync(dir, { recursive: true, force: true });
  for (const [k, v] of Object.entries(attrs)) {
    fs.mkdirSync(path.dirname(path.join(dir, k)), { recursive: true });
    fs.writeFileSync(path.join(dir, k), v + '\n');
  }
  fs.mkdirSync(dir, { recursive: true });
}
const filter = (id: number, diskseq = 0n) => ({ id, diskseq, device: { major: 7, minor: 0 }, disk: { major: 7, minor: 0 } }) as native.FilterInfo;

test('with diskseq: a filter moves exactly when the number differs from the one it was bound to', () => {
  disk({ size: '2048', diskseq: '12' });
  const m = new Media(sys);
  expect(mediumOf({ major: 7, minor: 0 }, sys)).toBe('diskseq 12');
  expect(m.moved([filter(1, 12n)])).toEqual([]);
  disk({ size: '2048', diskseq: '13' });
  expect(m.moved([filter(1, 12n)])).toEqual([{ filter: filter(1, 12n), was: 'diskseq 12', now: 'diskseq 13' }]);
});

test('without diskseq: the fingerprint taken at set time; a new backing file or size moves the filter', () => {
  const a = path.join(files, 'a.img');
  const b = path.join(files, 'b.img');
  fs.writeFileSync(a, '');
  fs.writeFileSync(b, '');
  disk({ size: '2048', 'loop/backing_file': a, 'loop/offset': '0' });
  const m = new Media(sys);
  m.note(filter(1));
  expect(m.moved([filter(1)])).toEqual([]);
  disk({ size: '2048', 'loop/backing_file': b, 'loop/offset': '0' });
  const out = m.moved([filter(1)]);
  expect(out).toHaveLength(1);
  expect(out[0].was).toContain(`backing ${a}`);
  expect(out[0].now).toContain(`backing ${b}`);
  // a disk of another size is another medium too
  const m2 = new Media(sys);
  m2.note(filter(2));
  disk({ size: '4096', 'loop/backing_file': b, 'loop/offset': '0' });
  expect(m2.moved([filter(2)]).map((x) => x.now)).toEqual([expect.stringMatching(/^size 4096, backing/)]);
});

test('a filter first seen after adoption is fingerprinted then; a gone disk is reported as gone', () => {
  disk({ size: '2048' });
  const m = new Media(sys);
  expect(m.moved([filter(3)])).toEqual([]); // first sight: recorded, nothing to compare
  fs.rmSync(path.join(sys, 'dev', 'block', '7:0'), { recursive: true });
  expect(m.moved([filter(3)])).toEqual([{ filter: filter(3), was: 'size 2048', now: null }]);
});
