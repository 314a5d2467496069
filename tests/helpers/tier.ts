// What a test suite does when its tier cannot run here. Outside CI it is skipped,
// loudly: the reason is printed and is part of the suite's name, so jest's output and
// the summary of scripts/test show it. Under CI (CI=true) it is a failing test that
// carries the reason: a machine that cannot run a tier is a failed CI, not a pass.
// Every host and VM suite takes its precondition through here.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from './common';
import { loopUnavailableReason } from './loop';

/** CI=true (or any value but "", "0" and "false"), as CI services set it. */
export function inCi(): boolean {
  const v = (process.env.CI ?? '').toLowerCase();
  return v !== '' && v !== '0' && v !== 'false';
}

/** Build outputs, relative to the repository root. */
export const BUILT = {
  agent: 'dist/agent/main.js',
  cli: 'dist/client/cli.js',
  addon: 'build/Release/iofilter.node',
} as const;

/** Why some of `outputs` (repository-relative) are missing, or null when `npm run build` made them all. */
export function builtReason(...outputs: string[]): string | null {
  const missing = outputs.filter((o) => !fs.existsSync(path.join(ROOT, o)));
  return missing.length ? `the project is not built (npm run build): ${missing.join(', ')} missing` : null;
}

/** The host tier: root, loop devices, and these build outputs. */
export function hostUnavailableReason(...outputs: string[]): string | null {
  return loopUnavailableReason() ?? builtReason(...outputs);
}

type Block = (name: string, fn: () => void) => void;

/**
 * `describe` when `reason` is null. Otherwise, outside CI, the block is skipped with
 * the reason in its name; under CI it becomes one failing test that says why.
 */
export function describeIf(reason: string | null): Block {
  if (!reason) return describe;
  if (inCi())
    return (name) =>
      describe(name, () => {
        test('can run on this machine', () => {
          throw new Error(`${name}: cannot run here under CI: ${reason}`);
        });
      });
  return (name, fn) => {
    console.warn(`SKIPPED: ${name}: ${reason}`);
    describe.skip(`${name} [skipped: ${reason}]`, fn);
  };
}
