// The agent's grace period (native/pools.cc RcuGrace: synchronize_rcu() through an
// array-of-maps update) on the host kernel: it waits for a BPF program that is running
// when it starts, whatever membarrier says, and a refusal is an error, never no wait.
import { buildHoldProgram, buildPoolsHarness, parseInflight, runHarness } from '../helpers/pools-harness';
import * as native from '../../native';
import { BUILT, describeIf, hostUnavailableReason } from '../helpers/tier';

const d = describeIf(hostUnavailableReason(BUILT.addon));

d('RCU grace periods on the host kernel', () => {
  let harness: string;
  let hold: string;
  beforeAll(() => {
    harness = buildPoolsHarness();
    hold = buildHoldProgram();
  });

  // the program does 2^19 bpf_loop callbacks of 64 adds between "started" and "done";
  // the grace period is called once it has started and had not finished
  const inflight = (...extra: string[]) => {
    const r = runHarness(harness, 'inflight', hold, String(1 << 19), ...extra);
    expect(r.status).toBe(0);
    expect(r.lines).toHaveLength(1);
    // (the harness retries a run where the program ended before the grace period began)
    const got = parseInflight(r.lines[0]);
    expect({ doneAfter: got.doneAfter, spins: got.spins, run: got.run }).toEqual({ doneAfter: 1, spins: 64 * (1 << 19), run: 0 });
    return got.graceMs;
  };

  test('the grace period returns only after a BPF program running when it began has finished', () => {
    expect(inflight()).toBeGreaterThan(0);
  });

  test('membarrier refused by seccomp changes nothing (it was the old mechanism, whose refusal meant no wait)', () => {
    inflight('deny-membarrier');
  });

  test('bpf() refused by seccomp: the take that needs freed memory fails with EPERM and says why; creating one fails too', () => {
    const r = runHarness(harness, 'refused');
    expect(r.lines).toEqual([
      'error EPERM the range pool exhausted: replaced memory cannot be freed, cannot wait for an RCU grace period (update of an array-of-maps element): Operation not permitted',
      'error EPERM cannot wait for RCU grace periods: creating an array map: Operation not permitted',
    ]);
    expect(r.status).toBe(0);
  });

  test('probe names the mechanism', async () => {
    expect((await native.probe()).features.gracePeriod).toBe('synchronize_rcu (the kernel\'s wait after an array-of-maps update)');
  });
});
