// Whether a kernel fills the kprobe link's miss count (native/linkinfo.cc, compiled
// unchanged), decided from its BTF: the member must exist where our own layout of
// struct bpf_link_info reads it, as the system's headers may be older than the field.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ROOT } from '../helpers/common';

let harness: string;
beforeAll(() => {
  harness = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'iof-linkinfo-')), 'harness');
  execFileSync('g++', ['-O2', '-Wall', '-Werror', '-std=c++17', '-I', path.join(ROOT, 'native'), path.join(ROOT, 'tests', 'unit', 'linkinfo_harness.cc'),
    path.join(ROOT, 'native', 'linkinfo.cc'), path.join(ROOT, 'native', 'errors.cc'), '-lbpf', '-o', harness]);
});

test('reported only where bpf_link_info has perf_event.kprobe.missed at byte 48 (6.7+), not before, not elsewhere; no link: unset', () => {
  const r = spawnSync(harness, { encoding: 'utf8' });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  expect(r.stdout.trim().split('\n')).toEqual(['6.1 0', '6.6 0', '6.7 1', '6.12 1', 'missed-elsewhere 0', 'no-bpf_link_info 0', 'no-link unset']);
});
