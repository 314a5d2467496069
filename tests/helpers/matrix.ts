// The kernel matrix: each VM case records pass/fail per (kernel, mode, case) in
// IOFILTER_MATRIX_DIR (default tests/vm/results), one JSON file per (kernel, suite)
// that this run's rows replace whole; the README's table is rendered from them by
// tests/vm/matrix-table. Every case a suite defines is listed as expected when the
// suite is collected, so a case that never recorded (its suite did not reach it, a
// -t filter left it out) shows MISSING, not "not run there".
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from './common';

export interface MatrixRow {
  kernel: string;
  release: string;
  mode: string;
  case: string;
  result: 'pass' | 'fail' | 'refused';
  note?: string;
}

const rows: MatrixRow[] = [];
const expected: { kernel: string; mode: string; case: string }[] = [];
let release = '';

/** A case's default time: under the vm project's 120 s test timeout, so the case records its own timeout first. */
export const CASE_MS = 110_000;
/** The jest timeout for a case given `ms`: room for the case to record and throw first. */
export const jestTimeout = (ms: number) => ms + 10_000;

export function setRelease(r: string): void {
  release = r;
}

/**
 * A test body whose outcome is recorded for (kernel, mode, case); failures still fail the
 * test. The body gets `timeoutMs` (pass the test jestTimeout(timeoutMs) when it is over
 * CASE_MS): past it the case is recorded as failed and throws, and a body that finishes
 * later records nothing - jest has failed the test by then, so it is no pass.
 */
export function matrixCase(kernel: string, mode: string, name: string, fn: () => Promise<void>, timeoutMs = CASE_MS): () => Promise<void> {
  expected.push({ kernel, mode, case: name });
  return async () => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_r, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([fn(), timeout]);
      rows.push({ kernel, release, mode, case: name, result: 'pass' });
    } catch (e) {
      rows.push({ kernel, release, mode, case: name, result: 'fail', note: (e as Error).message.split('\n')[0].slice(0, 200) });
      throw e;
    } finally {
      clearTimeout(timer);
    }
  };
}

/** A mode the kernel refuses, recorded with its reason (the test asserts the refusal). */
export function matrixRefused(kernel: string, mode: string, name: string, reason: string): void {
  rows.push({ kernel, release, mode, case: name, result: 'refused', note: reason });
}

/** Writes this run's rows and expected cases for (`kernel`, `suite`), replacing that file: nothing of an earlier run stays. */
export function writeMatrix(kernel: string, suite: string): void {
  const dir = process.env.IOFILTER_MATRIX_DIR || path.join(ROOT, 'tests', 'vm', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `matrix-${kernel}--${suite}.json`);
  const out = {
    date: new Date().toISOString(),
    kernel,
    suite,
    expected: expected.filter((r) => r.kernel === kernel).map((r) => ({ mode: r.mode, case: r.case })),
    rows: rows.filter((r) => r.kernel === kernel),
  };
  fs.writeFileSync(file, JSON.stringify(out, null, 1) + '\n');
}
