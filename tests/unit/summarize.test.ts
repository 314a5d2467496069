// scripts/lib/summarize.js, the closing line of scripts/test, on fixture results
// (tests/unit/fixtures/summarize/CASE/TIER.json): jest's own failure flags, a snapshot
// failure, results of the wrong shape, a tier that lost an expected file, suites that
// did not run, skipped tests inside and outside CI. Whatever the input, the last line
// on stdout is "N passed, N failed" and the exit code is 1 exactly when N failed > 0.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from '../helpers/common';

const SCRIPT = path.join(ROOT, 'scripts', 'lib', 'summarize.js');
const FIXTURES = path.join(ROOT, 'tests', 'unit', 'fixtures', 'summarize');
const VM_FILES = fs.readdirSync(path.join(ROOT, 'tests', 'vm')).filter((n) => n.endsWith('.test.ts')).length;

function summarize(fixture: string, tiers: string[], ci = ''): { code: number | null; last: string; stderr: string } {
  const r = spawnSync(process.execPath, [SCRIPT, path.join(FIXTURES, fixture), ...tiers], { encoding: 'utf8', env: { ...process.env, CI: ci } });
  const lines = r.stdout.trimEnd().split('\n');
  expect(lines).toHaveLength(1); // the closing line only
  return { code: r.status, last: lines[0], stderr: r.stderr };
}

test.each<[string, string, string[], string, RegExp | null]>([
  ['all passed', 'ok', ['unit'], '3 passed, 0 failed', null],
  ['numFailedTestSuites with every suite reading passed', 'failed-suites-flag', ['unit'], '1 passed, 1 failed', /unit: FAILED: jest reports failure \(success: false, numFailedTestSuites: 1\) and no failed test explains it/],
  ['numRuntimeErrorTestSuites', 'runtime-error-flag', ['unit'], '1 passed, 1 failed', /numRuntimeErrorTestSuites: 1/],
  ['success: false alone', 'success-false', ['unit'], '1 passed, 1 failed', /jest reports failure \(success: false\)/],
  ['a snapshot failure', 'snapshot-failure', ['unit'], '1 passed, 1 failed', /unit: FAILED: jest reports a snapshot failure/],
  ['{}', 'empty-object', ['unit'], '0 passed, 1 failed', /unit: FAILED: its results are not jest --json output: no testResults array/],
  ['a suite without assertionResults', 'bad-suite', ['unit'], '0 passed, 1 failed', /testResults\[0\] \(tests\/unit\/a.test.ts\) has no assertionResults array/],
  ['not JSON', 'not-json', ['unit'], '0 passed, 1 failed', /unit: FAILED: the tier produced no results \(/],
  ['no results file', 'ok', ['host'], '0 passed, 1 failed', /host: FAILED: the tier produced no results \(ENOENT\)/],
  ['no suite', 'no-suites', ['unit'], '0 passed, 1 failed', /unit: FAILED: no test suite ran/],
  ['vm-6.1 lost full.test.ts', 'lost-file', ['vm-6.1:tests/vm/core.test.ts,tests/vm/full.test.ts'], '3 passed, 1 failed', /vm-6.1: FAILED: tests\/vm\/full.test.ts was expected and did not run/],
  ['vm-6.1 ran what it should', 'lost-file', ['vm-6.1:tests/vm/core.test.ts'], '3 passed, 0 failed', null],
  // every tests/vm/*.test.ts but core.test.ts (the one the fixture ran) is missing
  ['a directory expected: each of its test files', 'lost-file', ['vm-6.1:tests/vm'], `3 passed, ${VM_FILES - 1} failed`, /tests\/vm\/full.test.ts was expected/],
  ['a suite that did not run, and a failed test', 'suite-did-not-run', ['host'], '1 passed, 2 failed', /host tests\/host\/a.test.ts: FAILED: the suite did not run: SyntaxError: x$/m],
  ['skipped and todo outside CI: allowed, listed', 'skipped', ['host'], '1 passed, 0 failed', /2 test\(s\) did not run \(allowed outside CI/],
  ['two tiers add up', 'lost-file', ['vm-6.1:tests/vm/core.test.ts', 'unit'], '3 passed, 1 failed', /unit: FAILED: the tier produced no results/],
])('%s', (_n, fixture, tiers, last, err) => {
  const r = summarize(fixture, tiers);
  expect(r.last).toBe(last);
  expect(r.code).toBe(/ 0 failed$/.test(last) ? 0 : 1);
  if (err) expect(r.stderr).toMatch(err);
  else expect(r.stderr).not.toMatch(/FAILED/);
});

test('skipped and todo under CI=true: each counts as failed', () => {
  const r = summarize('skipped', ['host'], 'true');
  expect(r).toMatchObject({ code: 1, last: '1 passed, 2 failed' });
  expect(r.stderr).toMatch(/2 test\(s\) did not run \(counted as FAILED under CI\)/);
});

test('no tier given: a failure, with the closing line', () => {
  const r = summarize('ok', []);
  expect(r).toMatchObject({ code: 1, last: '0 passed, 1 failed' });
  expect(r.stderr).toMatch(/usage: /);
});
