// Each program's misses from the native figures to what a client decodes (and what
// `iofilterctl status --json` prints): the kprobe link's count (6.7+) as the exact
// uint64, and unset, never 0, where the kernel does not report it.
import type * as grpc from '@grpc/grpc-js';
import { attachState } from '../../agent/wire';
import type * as native from '../../native';
import { loadProto } from '../../proto';

const svc = loadProto().def['iofilter.v1.IoFilterService'] as grpc.ServiceDefinition;
const MAX = (1n << 64n) - 1n;

function filterer(programs: native.ProgramStats[]): native.Filterer {
  const state: native.AttachState = {
    mode: 'kprobe', pinDir: '/sys/fs/bpf/iofilter', adopted: false, pinned: true, progIds: [7], linkIds: [3], mapIds: [], hook: 'kprobe/should_fail_bio', maxDisks: 1024, selfTest: null,
  };
  return { state, programStats: () => programs } as unknown as native.Filterer;
}

test('linkMissed: the full uint64 through the wire and JSON; null (kernel < 6.7, no kprobe link) stays unset', () => {
  const state = attachState(
    filterer([
      { progId: 7, name: 'iofilter_kprobe', recursionMisses: 2n, runCount: 0n, linkMissed: MAX },
      { progId: 8, name: 'iofilter_kprobe', recursionMisses: null, runCount: 0n, linkMissed: null },
      { progId: 9, name: 'iofilter_kprobe', recursionMisses: 0n, runCount: 0n, linkMissed: 0n },
    ]),
    '/sys/fs/bpf/iofilter',
  );
  const bytes = svc.Status.responseSerialize({ state, filters: [] });
  const got = svc.Status.responseDeserialize(bytes) as { state: { programs: Record<string, unknown>[] } };
  const programs = JSON.parse(JSON.stringify(got)).state.programs;
  expect(programs.map((p: Record<string, unknown>) => [p.progId, p.recursionMisses, p.linkMissed])).toEqual([
    [7, '2', String(MAX)],
    [8, undefined, undefined],
    [9, '0', '0'],
  ]);
});
