// The persisted backends (types.ts PersistedBackend), built the same way for the agent
// and for the watchdog, so a backend added here gets the state dir, the owner lock, the
// watchdog and the restore at agent start without anything else to wire.
import type { CgroupResolver } from '../cgroup';
import type { Logger } from '../log';
import { BlkinjectBackend } from './blkinject/backend';
import type { ProbeEnv } from './blkinject/capability';
import type { InjectionFiles } from './blkinject/debugfs';
import { DmBackend } from './dm/backend';
import type { DmCounting } from './dm/count';
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
  /** blkinject: where debugfs is mounted (default /sys/kernel/debug), and test doubles. */
  debugfs?: string;
  blkFiles?: InjectionFiles;
  blkProbe?: Partial<ProbeEnv>;
  /** Where the cgroup2 mount is found (tests: a fake tree). */
  cgroups?: CgroupResolver;
  /** Called after a fault with a deadline is in force (the agent starts the watchdog). */
  onFault?: () => void;
  /** The agent's dm counters (the watchdog has none). */
  counting?: DmCounting;
}

export interface Persisted {
  dm: DmBackend;
  blkinject: BlkinjectBackend;
  throttle: ThrottleBackend;
  /** Every persisted backend, in the order `auto` tries them after bpf. */
  all: PersistedBackend[];
}

export function persistedBackends(d: PersistedDeps): Persisted {
  const dm = new DmBackend({ state: d.state, dm: d.dmsetup, clock: d.clock, release: d.release, log: d.log, sysfs: d.sysfs, onFault: d.onFault, counting: d.counting });
  const blkinject = new BlkinjectBackend({ state: d.state, clock: d.clock, release: d.release, log: d.log, sysfs: d.sysfs, debugfs: d.debugfs, files: d.blkFiles, probeEnv: d.blkProbe, onFault: d.onFault });
  const throttle = new ThrottleBackend({ state: d.state, clock: d.clock, log: d.log, sysfs: d.sysfs, cgroups: d.cgroups, onFault: d.onFault });
  // auto tries dm first: on a dm device it serves EIO on any kernel
  return { dm, blkinject, throttle, all: [dm, blkinject, throttle] };
}
