// The backend interface: what serves a filter. `bpf` (the program at should_fail_bio)
// is served by IoFilterCore directly today; `dm` (device-mapper table swaps) lives in
// backends/dm; `blkinject` (the kernel's block error injection) and `throttle` (cgroup
// io.max) are the next ones. Every backend answers the same questions: can it run here
// (capability), can it serve THIS request on THIS device exactly (refusal), and the
// filter lifecycle, including faults whose TTL the kernel does not enforce.
import type * as native from '../../native';
import type { Backend__Output } from '../../proto/gen/iofilter/v1/Backend';
import type { BackendCapability } from '../../proto/gen/iofilter/v1/BackendCapability';
import type { Filter } from '../../proto/gen/iofilter/v1/Filter';
import type { DeviceInfo } from '../devices';
import type { FaultSpec } from '../faults';

export type BackendName = 'bpf' | 'dm' | 'blkinject' | 'throttle';

export const BACKEND_WIRE: Record<BackendName, Backend__Output> = {
  bpf: 'BACKEND_BPF',
  dm: 'BACKEND_DM',
  blkinject: 'BACKEND_BLKINJECT',
  throttle: 'BACKEND_THROTTLE',
};

/** 'BACKEND_DM' -> 'dm'; UNSPECIFIED/AUTO -> 'auto'; undefined for anything else. */
export function backendFromWire(v: unknown): BackendName | 'auto' | undefined {
  if (v === undefined || v === null || v === '' || v === 'BACKEND_UNSPECIFIED' || v === 'BACKEND_AUTO' || v === 0 || v === 1) return 'auto';
  for (const [k, w] of Object.entries(BACKEND_WIRE)) if (v === w) return k as BackendName;
  return undefined;
}

/** What identifies a filter to delete, as the service resolved it. */
export type BackendKey = { id: number } | { device: { major: number; minor: number } };

export interface Backend {
  readonly name: BackendName;
  /** Whether it can run on this host, with the reason (or notes) and what it offers. */
  capability(): BackendCapability;
  /**
   * Null when it can serve `spec` on `dev` EXACTLY; else the reason it cannot, naming
   * what would work. Never served approximately.
   */
  refusal(spec: native.FilterSpec, dev: DeviceInfo, fault: FaultSpec): Promise<string | null>;
  /** Creates or replaces the device's filter (all-or-nothing). */
  set(spec: native.FilterSpec, dev: DeviceInfo, fault: FaultSpec): Promise<Filter>;
  /** Removes the filters the key names; how many. */
  delete(key: BackendKey): Promise<number>;
  list(): Filter[];
  /** Removes every filter; how many. */
  clear(): Promise<number>;
  /** Ends every fault whose TTL has passed (backends the kernel does not expire); how many. */
  restoreExpired(): Promise<number>;
}

/**
 * A backend whose faults the kernel does not end by itself (dm tables, block error
 * injection rules, io.max lines): its state is persisted in the state dir before each
 * change, and the agent, or the watchdog when the agent is gone, restores each fault
 * at its deadline with this same code.
 */
export interface PersistedBackend extends Backend {
  /** Whether it works here; the answer is kept for capability(). */
  probe(): Promise<BackendCapability>;
  /**
   * Whether its faults keep other backends' filters off their device (dm: a table swap
   * and a bpf verdict on the same bios would be two faults in one). False for io.max,
   * which holds bios back before they are submitted, whatever else acts on them.
   */
  readonly exclusive: boolean;
  /** Whether this filter id is one of its faults. */
  owns(id: number): boolean;
  /** Its fault on this device, if any (exclusive backends keep off each other's devices). */
  faultOn(dev: { major: number; minor: number }): { id: number } | undefined;
  /** Whether any of its faults has a deadline (the watchdog runs while one does). */
  hasDeadlines(): boolean;
  /** Ms to its nearest deadline (Infinity: none). */
  nextDeadlineMs(): number;
  /** Whether a change was left half done (a crash): the next owner must finish it even with no filter listed. */
  unsettled?(): boolean;
}
