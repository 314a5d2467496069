// The attachOnDemand setting (issue 25): off by default, a boolean, and only with a mode to attach in.
import { ConfigError, resolveConfig } from '../../agent/config';

test('attachOnDemand: off by default; true with a mode; refused with attach none or a non-boolean', () => {
  expect(resolveConfig({}).attachOnDemand).toBe(false);
  expect(resolveConfig({ attachOnDemand: true, attach: 'fmod_ret' })).toMatchObject({ attachOnDemand: true, attach: 'fmod_ret' });
  expect(() => resolveConfig({ attachOnDemand: true, attach: 'none' })).toThrow(new ConfigError('attachOnDemand needs a mode to attach in: attach must be auto, fmod_ret, kprobe or observe, not none'));
  expect(() => resolveConfig({ attachOnDemand: 'yes' as unknown as boolean })).toThrow(new ConfigError('attachOnDemand must be true or false'));
});
