// The attach policy (issue 25): ALWAYS attaches at start; ON_DEMAND attaches (with the
// self-test) at the first SetFilter and detaches when the last filter is gone, so a host
// without filters runs no program at all. What Status says about it while idle.
import type * as native from '../native';
import type { AttachPolicy } from '../proto/gen/iofilter/v1/AttachPolicy';
import type { AgentConfig } from './config';

export const policyOf = (cfg: AgentConfig): AttachPolicy => (cfg.attachOnDemand ? 'ATTACH_POLICY_ON_DEMAND' : 'ATTACH_POLICY_ALWAYS');

/** Why the program is not attached, and what attaches it. */
export function notAttachedWhy(cfg: AgentConfig, attachError: string): string {
  const why = attachError ? ` (${attachError})` : '';
  return cfg.attachOnDemand ? `not attached${why}: attached on demand at the first SetFilter` : `not attached${why}: call Attach first`;
}

/**
 * The bpf backend of an idle on-demand agent: available when the configured mode has an
 * enforcing hook on this kernel (the self-test runs at the first SetFilter).
 */
export function idleBpfCapability(cfg: AgentConfig, caps: native.Capabilities | null) {
  const ok = (caps?.modes ?? []).filter((m) => m.available && m.mode !== 'observe' && (cfg.attach === 'auto' || m.mode === cfg.attach));
  return {
    backend: 'BACKEND_BPF' as const,
    available: ok.length > 0,
    reason: ok.length ? '' : `attach on demand in mode ${cfg.attach}: no enforcing mode available`,
    detail: `attached on demand (${cfg.attach}); not attached now`,
  };
}
