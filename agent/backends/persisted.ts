// The persisted backends (types.ts PersistedBackend), built the same way for the agent
// and for the watchdog, so a backend added here gets the state dir, the owner lock, the
// watchdog and the restore at agent start without anything else to wire.
import type { CgroupResolver } from '../cgroup';
import type { Logger } from '../log';
import { DmBackend } from './dm/backend';
import type { Dmsetup } from './dm/dmsetup';
import type { Clock, StateDir } from './dm/state';
import { ThrottleBackend } from './throttle/backend';
import type { PersistedBackend } from './types';

export interface PersistedDeps {
  state: StateDir;
  dmsetup: Dmsetup;
  clock: Clock;
  release: string;
  log: Logger;
  sysfs?: string;
  /** Where the cgroup2 mount is found (tests: a fake tree). */
  cgroups?: CgroupResolver;
  /** Called after a fault with a deadline is in force (the agent starts the watchdog). */
  onFault?: () => void;
}

export interface Persisted {
  dm: DmBackend;
  throttle: ThrottleBackend;
  /** Every persisted backend, in the order `auto` tries them after bpf. */
  all: PersistedBackend[];
}

export function persistedBackends(d: PersistedDeps): Persisted {
  const dm = new DmBackend({ state: d.state, dm: d.dmsetup, clock: d.clock, release: d.release, log: d.log, sysfs: d.sysfs, onFault: d.onFault });
  const throttle = new ThrottleBackend({ state: d.state, clock: d.clock, log: d.log, sysfs: d.sysfs, cgroups: d.cgroups, onFault: d.onFault });
  return { dm, throttle, all: [dm, throttle] };
}
