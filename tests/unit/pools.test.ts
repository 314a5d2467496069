// The agent's pools and reclaimer (native/pools.cc, compiled unchanged) under the
// schedules that matter; the grace period is the harness's own, held shut on demand.
import { buildPoolsHarness, runHarness } from '../helpers/pools-harness';

let harness: string;
beforeAll(() => {
  harness = buildPoolsHarness();
});

test('a take() needing memory quarantined before the reclaimer\'s running round returns when that round ends (no deadlock)', () => {
  // a filter of 40 ranges in a pool of 100 replaced twice in one grace period: the
  // second replace needs the first's 40, stamped before the round the reclaimer is in
  const r = runHarness(harness, 'deadlock');
  expect(r.lines).toEqual(['ok second replace 0+40', 'ok graces 2']);
  expect(r.status).toBe(0);
});

test('quarantined memory that is not enough even when freed gives ENOSPC, not a hang', () => {
  const r = runHarness(harness, 'exhausted');
  expect(r.lines).toEqual([
    'error ENOSPC the range pool exhausted (no free run of 80)',
    'ok take 60 0+60', // the freed run, after the grace period the failed take waited for
  ]);
  expect(r.status).toBe(0);
});

test('a grace period that fails frees nothing and every take that needs it says why', () => {
  const r = runHarness(harness, 'grace-fails');
  const why = 'error EPERM the range pool exhausted: replaced memory cannot be freed, refused by the scenario';
  expect(r.lines).toEqual([why, 'ok take 10 90+10', why, 'ok graces 1']); // the one of rebuild()
  expect(r.status).toBe(0);
});
