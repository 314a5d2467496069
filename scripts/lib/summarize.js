#!/usr/bin/env node
// The end of scripts/test: reads each tier's jest --json results and prints the one
// closing line "N passed, N failed" (the last line on stdout, whatever the input);
// per-tier figures and every test or suite that did not run, with its reason, go to
// stderr. Counted as failed, besides failed tests: a suite that could not run; a tier
// with no results, results of the wrong shape, or no suite; jest's own verdict when it
// says failure and no failed test explains it (success false, failed or runtime-error
// suites); a snapshot failure; and each expected test file the tier did not run.
// Skipped and todo tests are allowed outside CI, and listed; under CI (CI=true) each
// counts as failed, because a machine that cannot run a tier is a failed CI. (CI is read
// as tests/helpers/tier.ts reads it: set, and not "0" or "false".)
//   node scripts/lib/summarize.js RESULTS_DIR TIER[:EXPECTED,...]...
// reads RESULTS_DIR/TIER.json; EXPECTED are repository-relative test files, or
// directories whose every *.test.ts the tier must have run.
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..', '..');
const NOT_RUN = new Set(['pending', 'skipped', 'todo', 'disabled']);

/** Every *.test.ts under dir (repository-relative), or [entry] for a file. */
function expand(entry) {
  const abs = path.resolve(root, entry);
  if (!fs.existsSync(abs) || !fs.statSync(abs).isDirectory()) return [entry];
  const out = [];
  for (const e of fs.readdirSync(abs, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && e.name.endsWith('.test.ts')) out.push(path.relative(root, path.join(e.parentPath ?? e.path, e.name)));
  }
  return out.sort();
}

/** Why `r` is not jest --json output this script can read, or null. */
function shapeProblem(r) {
  if (r === null || typeof r !== 'object' || Array.isArray(r)) return 'not a JSON object';
  if (!Array.isArray(r.testResults)) return 'no testResults array';
  for (const [i, s] of r.testResults.entries()) {
    if (!s || typeof s.name !== 'string') return `testResults[${i}] has no name`;
    if (!Array.isArray(s.assertionResults)) return `testResults[${i}] (${s.name}) has no assertionResults array`;
  }
  return null;
}

/** One tier's figures; problems are tier-level failures, one count each. */
function readTier(dir, spec) {
  const [tier, list] = spec.split(/:(.*)/s);
  const expected = list ? list.split(',').filter(Boolean).flatMap(expand) : [];
  const t = { tier, passed: 0, failed: 0, notRun: [], problems: [] };
  let r;
  try {
    r = JSON.parse(fs.readFileSync(path.join(dir, `${tier}.json`), 'utf8'));
  } catch (e) {
    t.problems.push(`the tier produced no results (${e.code || e.message})`);
    return t;
  }
  const bad = shapeProblem(r);
  if (bad) {
    t.problems.push(`its results are not jest --json output: ${bad}`);
    return t;
  }
  const ran = new Set();
  for (const suite of r.testResults) {
    const file = path.relative(root, path.resolve(root, suite.name));
    ran.add(file);
    const tests = suite.assertionResults;
    t.passed += tests.filter((x) => x.status === 'passed').length;
    t.failed += tests.filter((x) => x.status === 'failed').length;
    for (const x of tests.filter((y) => NOT_RUN.has(y.status))) t.notRun.push(`${tier} ${file}: ${x.status}: ${x.fullName}`);
    // a suite that could not run (syntax error, a throw at load) has no failed test: count it
    if (suite.status === 'failed' && !tests.some((x) => x.status === 'failed')) {
      t.failed++;
      console.error(`${tier} ${file}: FAILED: the suite did not run: ${(suite.message || '').trim().split('\n')[0]}`);
    }
  }
  if (!r.testResults.length) t.problems.push('no test suite ran');
  for (const f of expected) if (!ran.has(f)) t.problems.push(`${f} was expected and did not run`);
  if (r.snapshot && r.snapshot.failure) t.problems.push('jest reports a snapshot failure (obsolete or unwritten snapshots under --ci)');
  // jest's verdict, when nothing above explains it
  const says = [];
  if (r.success === false) says.push('success: false');
  if (r.numFailedTestSuites > 0) says.push(`numFailedTestSuites: ${r.numFailedTestSuites}`);
  if (r.numRuntimeErrorTestSuites > 0) says.push(`numRuntimeErrorTestSuites: ${r.numRuntimeErrorTestSuites}`);
  if (says.length && !t.failed && !t.problems.length) t.problems.push(`jest reports failure (${says.join(', ')}) and no failed test explains it`);
  return t;
}

function main(argv, env) {
  const [dir, ...specs] = argv;
  const ciValue = (env.CI || '').toLowerCase();
  const ci = ciValue !== '' && ciValue !== '0' && ciValue !== 'false';
  let passed = 0;
  let failed = 0;
  const notRun = []; // "tier file: what and why"
  if (!dir || !specs.length) {
    console.error('usage: summarize.js RESULTS_DIR TIER[:EXPECTED,...]...: no tier given');
    failed++;
  }
  for (const spec of specs) {
    const t = readTier(dir, spec);
    for (const p of t.problems) console.error(`${t.tier}: FAILED: ${p}`);
    const f = t.failed + t.problems.length;
    console.error(`${t.tier}: ${t.passed} passed, ${f} failed, ${t.notRun.length} not run`);
    passed += t.passed;
    failed += f;
    notRun.push(...t.notRun);
  }
  if (notRun.length) {
    const head = ci ? 'counted as FAILED under CI' : 'allowed outside CI; under CI=true each is a failure';
    console.error(`${notRun.length} test(s) did not run (${head}):`);
    for (const n of notRun) console.error(`  ${n}`);
    if (ci) failed += notRun.length;
  }
  console.log(`${passed} passed, ${failed} failed`);
  return failed ? 1 : 0;
}

let code;
try {
  code = main(process.argv.slice(2), process.env);
} catch (e) {
  // never end without the closing line
  console.error(`summarize: ${e.stack || e}`);
  console.log('0 passed, 1 failed');
  code = 1;
}
process.exit(code);
