// Status says what observe through block_bio_queue does not see (issue 22, item 7):
// the caveat goes with the observe capability exactly when that is its hook.
import { capabilityOf, OBSERVE_TP_CAVEAT } from '../../agent/wire';

test('observe on tp_btf/block_bio_queue carries the md member-disk caveat, after the reason it has', () => {
  const because = 'uses tp_btf/block_bio_queue because fentry/should_fail_bio: refused under lockdown';
  expect(capabilityOf({ mode: 'observe', available: true, hook: 'tp_btf/block_bio_queue', reason: because })).toEqual({
    mode: 'MODE_OBSERVE', available: true, hook: 'tp_btf/block_bio_queue', reason: `${because}; ${OBSERVE_TP_CAVEAT}`,
  });
  expect(capabilityOf({ mode: 'observe', available: true, hook: 'tp_btf/block_bio_queue', reason: '' }).reason).toBe(OBSERVE_TP_CAVEAT);
  expect(OBSERVE_TP_CAVEAT).toMatch(/md \(raid0, linear\).*member disk/);
});

test('no caveat where observe runs at should_fail_bio, where it is unavailable, or for other modes', () => {
  expect(capabilityOf({ mode: 'observe', available: true, hook: 'fentry/should_fail_bio', reason: '' }).reason).toBe('');
  expect(capabilityOf({ mode: 'observe', available: false, hook: 'tp_btf/block_bio_queue', reason: 'no BTF' }).reason).toBe('no BTF');
  expect(capabilityOf({ mode: 'fmod_ret', available: true, hook: 'fmod_ret/should_fail_bio', reason: '' })).toEqual({
    mode: 'MODE_FMOD_RET', available: true, hook: 'fmod_ret/should_fail_bio', reason: '',
  });
});
