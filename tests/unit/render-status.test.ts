// The attach details of `iofilterctl status` (client/render.ts): a link that is not
// pinned, the attach-time self-test, and each program's recursion misses - the I/O
// the kernel ran without the program, i.e. faults that could not be injected.
import pc from 'picocolors';
import { describeFilter, statusLines } from '../../client/render';
import type { AttachState__Output } from '../../proto/gen/iofilter/v1/AttachState';
import type { StatusResponse__Output } from '../../proto/gen/iofilter/v1/StatusResponse';

const plain = pc.createColors(false);
const AT = 1_700_000_000_000; // 2023-11-14T22:13:20.000Z

function status(state: Partial<AttachState__Output>, over: Partial<StatusResponse__Output> = {}): StatusResponse__Output {
  return {
    hostname: 'db1',
    kernelRelease: '6.1.0',
    agentVersion: '0.1.0',
    capabilities: [
      { mode: 'MODE_FMOD_RET', available: true, hook: 'fmod_ret/should_fail_bio', reason: '' },
      { mode: 'MODE_OBSERVE', available: true, hook: 'tp_btf/block_bio_queue', reason: '' },
    ],
    state: { attached: true, mode: 'MODE_FMOD_RET', pinDir: '/sys/fs/bpf/iofilter', hook: 'fmod_ret/should_fail_bio', progIds: [12], linkIds: [3], adopted: false, maxDisks: 1024, pinned: true, selfTest: null, programs: [], ...state },
    filters: [],
    attachError: '',
    ...over,
  } as unknown as StatusResponse__Output;
}

test('attached and pinned: the self-test, then each program with its recursion misses, right after the header', () => {
  const lines = statusLines(
    status({
      selfTest: { passed: true, atUnixMs: String(AT), detail: 'one write to loop9 sector 0 failed with EIO' },
      programs: [
        { progId: 12, name: 'iofilter_fmod_r', recursionMisses: '0', runCount: '0' },
        { progId: 13, name: 'iofilter_fmod_r', recursionMisses: '7', runCount: '0' },
      ],
    }),
    plain,
  );
  expect(lines).toEqual([
    'db1 kernel 6.1.0; attached fmod_ret (fmod_ret/should_fail_bio); fmod_ret yes, observe yes; agent 0.1.0',
    '  self-test: passed at 2023-11-14T22:13:20.000Z: one write to loop9 sector 0 failed with EIO',
    '  program 12 iofilter_fmod_r: 0 recursion misses',
    '  program 13 iofilter_fmod_r: 7 recursion misses: I/O it skipped, unfiltered',
    '  no filters',
  ]);
});

test('a kprobe link that cannot be pinned says filters end with the agent; recursion misses n/a before 5.12, kprobe misses before 6.7; a failed self-test', () => {
  const lines = statusLines(
    status({
      mode: 'MODE_KPROBE',
      hook: 'kprobe/should_fail_bio',
      pinned: false,
      selfTest: { passed: false, atUnixMs: String(AT), detail: 'the write to loop9 succeeded: the hook never ran' },
      programs: [{ progId: 5, name: 'iofilter_kprobe', runCount: '0' }], // recursionMisses unset: the kernel does not report it
    }),
    plain,
  );
  expect(lines.slice(1, 4)).toEqual([
    '  pinned: false: this kernel cannot pin the kprobe link (kprobe links need 5.15): the program and its filters end when the agent exits',
    '  self-test: FAILED at 2023-11-14T22:13:20.000Z: the write to loop9 succeeded: the hook never ran',
    '  program 5 iofilter_kprobe: recursion misses n/a (kernel < 5.12), kprobe misses n/a (kernel < 6.7)',
  ]);
});

test("kprobe mode on 6.7+: the kprobe link's own misses beside the recursion misses, yellow when not 0", () => {
  const kprobe = (linkMissed: string, c = plain) =>
    statusLines(status({ mode: 'MODE_KPROBE', hook: 'kprobe/should_fail_bio', programs: [{ progId: 5, name: 'iofilter_kprobe', recursionMisses: '0', runCount: '0', linkMissed }] }), c)[2];
  expect(kprobe('0')).toBe('  program 5 iofilter_kprobe: 0 recursion misses, 0 kprobe misses');
  expect(kprobe('4')).toBe('  program 5 iofilter_kprobe: 0 recursion misses, 4 kprobe misses: I/O it skipped, unfiltered');
  const color = pc.createColors(true);
  expect(kprobe('4', color)).toBe(`  program 5 iofilter_kprobe: 0 recursion misses, ${color.yellow('4 kprobe misses: I/O it skipped, unfiltered')}`);
});

test('adopted pins: the self-test was not run by this agent, and says why', () => {
  const lines = statusLines(status({ adopted: true, selfTest: null }), plain);
  expect(lines[0]).toMatch(/attached fmod_ret \(fmod_ret\/should_fail_bio\), adopted;/);
  expect(lines[1]).toBe('  self-test: not run (pins adopted from an earlier agent)');
});

test('a self-test that could not run: the state line and the self-test say UNPROVEN, never attached and working', () => {
  const detail = 'not run: no scratch loop device (opening /dev/loop-control: ENOENT): kept, UNPROVEN: nothing has shown that fmod_ret/should_fail_bio sees every bio';
  const lines = statusLines(status({ selfTest: { passed: false, atUnixMs: String(AT), detail } }), plain);
  expect(lines[0]).toBe('db1 kernel 6.1.0; attached fmod_ret (fmod_ret/should_fail_bio), UNPROVEN (the self-test could not run); fmod_ret yes, observe yes; agent 0.1.0');
  expect(lines[1]).toBe(`  self-test: UNPROVEN at 2023-11-14T22:13:20.000Z: ${detail}`);
  expect(statusLines(status({ selfTest: { passed: false, atUnixMs: String(AT), detail } }), pc.createColors(true))[1]).toContain(pc.createColors(true).yellow('UNPROVEN'));
});

test('not attached: no attach details, the attach error instead', () => {
  const lines = statusLines(status({ attached: false, mode: 'MODE_UNSPECIFIED', pinned: false, programs: [] }, { attachError: 'no hook' }), plain);
  expect(lines).toEqual([expect.stringMatching(/; not attached; /), '  not attached: no hook', '  no filters']);
});

test('on a terminal, misses and a failed self-test stand out (yellow, red); zero misses do not', () => {
  const color = pc.createColors(true);
  const lines = statusLines(
    status({
      selfTest: { passed: false, atUnixMs: String(AT), detail: 'x' },
      programs: [
        { progId: 1, name: 'a', recursionMisses: '3', runCount: '0' },
        { progId: 2, name: 'b', recursionMisses: '0', runCount: '0' },
      ],
    }),
    color,
  );
  expect(lines[1]).toContain(color.red('FAILED'));
  expect(lines[2]).toContain(color.yellow('3 recursion misses: I/O it skipped, unfiltered'));
  expect(lines[3]).toBe('  program 2 b: 0 recursion misses');
});

test('attach on demand: said attached or idle on the first line; the default policy goes unsaid', () => {
  const idle = statusLines(status({ attached: false, mode: 'MODE_UNSPECIFIED', pinned: false, programs: [], policy: 'ATTACH_POLICY_ON_DEMAND' }), plain);
  expect(idle[0]).toBe('db1 kernel 6.1.0; not attached (attach on demand: no filter); fmod_ret yes, observe yes; agent 0.1.0');
  const on = statusLines(status({ policy: 'ATTACH_POLICY_ON_DEMAND' }), plain);
  expect(on[0]).toBe('db1 kernel 6.1.0; attached fmod_ret (fmod_ret/should_fail_bio) on demand; fmod_ret yes, observe yes; agent 0.1.0');
  expect(statusLines(status({ policy: 'ATTACH_POLICY_ALWAYS' }), plain)[0]).toBe('db1 kernel 6.1.0; attached fmod_ret (fmod_ret/should_fail_bio); fmod_ret yes, observe yes; agent 0.1.0');
});

test('basic view (no per-range list): status shows one row per filter with its totals; set says the ranges are not in the answer', () => {
  const f = {
    id: 4, device: { major: 7, minor: 0, name: 'loop0' }, wholeDevice: false, ranges: [], hasExpiry: false, remainingMs: '0', probability: 1, maxFailures: '0', failures: '0',
    file: '', cgroup: null, matchedIos: '12', failedIos: '9', backend: 'BACKEND_BPF', notCounted: '',
  };
  const lines = statusLines(status({}, { filters: [f] as never }), plain);
  const row = lines.find((l) => /loop0/.test(l))!;
  expect(row.split('│').map((c) => c.trim()).filter(Boolean)).toEqual(['4', 'loop0 (7:0)', 'any', 'ranges (basic view)', 'error EIO', '12', '9', 'none']);
  expect(describeFilter(f as never)).toBe('loop0 (7:0): ranges (not in this view); ttl none; filter 4');
  expect(describeFilter({ ...f, wholeDevice: true } as never)).toBe('loop0 (7:0): whole device (not in this view); ttl none; filter 4');
});
