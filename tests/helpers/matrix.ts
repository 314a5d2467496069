// The kernel matrix: each VM case records pass/fail per (kernel, mode, case) in
// IOFILTER_MATRIX_DIR (default tests/vm/results), one JSON file per kernel; the
// README's table is rendered from them by tests/vm/matrix-table.
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
let release = '';

export function setRelease(r: string): void {
  release = r;
}

/** A test body whose outcome is recorded for (kernel, mode, case); failures still fail the test. */
export function matrixCase(kernel: string, mode: string, name: string, fn: () => Promise<void>): () => Promise<void> {
  return async () => {
    try {
      await fn();
      rows.push({ kernel, release, mode, case: name, result: 'pass' });
    } catch (e) {
      rows.push({ kernel, release, mode, case: name, result: 'fail', note: (e as Error).message.split('\n')[0].slice(0, 200) });
      throw e;
    }
  };
}

/** A mode the kernel refuses, recorded with its reason (the test asserts the refusal). */
export function matrixRefused(kernel: string, mode: string, name: string, reason: string): void {
  rows.push({ kernel, release, mode, case: name, result: 'refused', note: reason });
}

/** Writes this run's rows for `kernel` (replacing that kernel's file). */
export function writeMatrix(kernel: string): void {
  const dir = process.env.IOFILTER_MATRIX_DIR || path.join(ROOT, 'tests', 'vm', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const mine = rows.filter((r) => r.kernel === kernel);
  const file = path.join(dir, `matrix-${kernel}.json`);
  let prev: MatrixRow[] = [];
  try {
    prev = JSON.parse(fs.readFileSync(file, 'utf8')).rows ?? [];
  } catch {
    /* first run */
  }
  // a suite replaces its own cases; another suite's rows for this kernel stay
  const cases = new Set(mine.map((r) => `${r.mode}/${r.case}`));
  const merged = [...prev.filter((r) => !cases.has(`${r.mode}/${r.case}`)), ...mine];
  fs.writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), rows: merged }, null, 1) + '\n');
}
