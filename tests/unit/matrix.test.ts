// tests/helpers/matrix.ts, the VM suites' kernel-matrix recorder, and tests/vm/matrix-table
// that prints it: a case that outlives its time is recorded failed and never later as
// passed; every defined case is listed as expected, so one that never recorded shows
// MISSING; a file holds exactly one run of one suite (no rows of an earlier run).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { matrixCase, writeMatrix } from '../helpers/matrix';
import { ROOT } from '../helpers/common';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-matrix-'));
const saved = process.env.IOFILTER_MATRIX_DIR;
beforeAll(() => (process.env.IOFILTER_MATRIX_DIR = dir));
afterAll(() => {
  process.env.IOFILTER_MATRIX_DIR = saved;
  fs.rmSync(dir, { recursive: true, force: true });
});
const read = () => JSON.parse(fs.readFileSync(path.join(dir, 'matrix-9.9--unit.json'), 'utf8'));

// defined at collection, as the VM suites define theirs
const slow = matrixCase('9.9', 'fmod_ret', 'slow', () => new Promise((r) => setTimeout(r, 300)), 50);
const fine = matrixCase('9.9', 'fmod_ret', 'fine', async () => undefined);
matrixCase('9.9', 'fmod_ret', 'never run', async () => undefined);

test('a case past its time is recorded failed and throws; its body finishing later records nothing', async () => {
  fs.writeFileSync(path.join(dir, 'matrix-9.9--unit.json'), JSON.stringify({ rows: [{ kernel: '9.9', mode: 'fmod_ret', case: 'old', result: 'pass' }] }));
  await expect(slow()).rejects.toThrow('timed out after 50 ms');
  await fine();
  await new Promise((r) => setTimeout(r, 400)); // the slow body has finished by now
  writeMatrix('9.9', 'unit');
  const m = read();
  expect(m.rows.map((r: { case: string; result: string }) => `${r.case} ${r.result}`)).toEqual(['slow fail', 'fine pass']); // no "old": not merged
  expect(m.expected.map((r: { case: string }) => r.case)).toEqual(['slow', 'fine', 'never run']);
});

test('matrix-table: FAIL, pass, and MISSING for the case that never recorded', () => {
  const out = execFileSync(process.execPath, [path.join(ROOT, 'tests', 'vm', 'matrix-table'), dir], { encoding: 'utf8' });
  expect(out.split('\n').filter((l) => l.startsWith('| fmod_ret'))).toEqual(['| fmod_ret | fine | pass |', '| fmod_ret | never run | **MISSING** |', '| fmod_ret | slow | **FAIL** |']);
  expect(out).toContain('1 expected case(s) MISSING');
});

test('matrix-table --readme: the table replaces the marked block and nothing else; a file without the block is refused unchanged', () => {
  const table = path.join(ROOT, 'tests', 'vm', 'matrix-table');
  const readme = path.join(dir, 'README.md');
  fs.writeFileSync(readme, 'before\n<!-- kernel-matrix:begin -->\n| old | table |\n<!-- kernel-matrix:end -->\nafter\n');
  execFileSync(process.execPath, [table, '--readme', readme, dir], { stdio: 'pipe' });
  const lines = fs.readFileSync(readme, 'utf8').split('\n');
  expect(lines.slice(0, 2)).toEqual(['before', '<!-- kernel-matrix:begin -->']);
  expect(lines).toContain('| fmod_ret | fine | pass |');
  expect(lines).not.toContain('| old | table |');
  expect(lines.slice(-3)).toEqual(['<!-- kernel-matrix:end -->', 'after', '']);

  fs.writeFileSync(readme, 'no block\n');
  expect(() => execFileSync(process.execPath, [table, '--readme', readme, dir], { stdio: 'pipe' })).toThrow(/has no <!-- kernel-matrix:begin -->/);
  expect(fs.readFileSync(readme, 'utf8')).toBe('no block\n');
});
