// The linters, as `npm run lint` runs them: ESLint over the TypeScript tree and scripts
// (eslint.config.js) and clang-format's check of bpf/ and native/ against their
// .clang-format files (the file list is package.json's lint:c). Any finding fails the
// test, which shows the tool's own output.
import { spawnSync } from 'node:child_process';
import { ROOT } from '../helpers/common';

function lint(script: string): { exitCode: number | null; output: string } {
  const r = spawnSync('npm', ['run', '--silent', script], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  return { exitCode: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

test('ESLint finds nothing in the TypeScript tree and the .js scripts', () => {
  expect(lint('lint:ts')).toEqual({ exitCode: 0, output: '' });
});

test('clang-format finds nothing in bpf/ and native/', () => {
  const probe = spawnSync('clang-format', ['--version']);
  if (probe.error) throw new Error(`clang-format is not installed (scripts/install-deps installs it): ${probe.error.message}`);
  expect(lint('lint:c')).toEqual({ exitCode: 0, output: '' });
});
