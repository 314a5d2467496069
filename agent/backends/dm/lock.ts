// One writer of a state dir at a time: the agent while it runs, else the watchdog.
// The lock is an flock on <stateDir>/owner (the addon's directory lock: EBUSY names the
// holder's pid); a file inside keeps the directory from being removed on release, so
// every taker locks the same inode. The kernel drops it when its holder dies, so a
// SIGKILLed agent hands over to the waiting watchdog at once.
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface OwnerLock {
  release(): void;
}
/** Takes the lock on a directory or throws (code EBUSY, the holder's pid in the message). */
export type Locker = (dir: string) => OwnerLock;

export function ownerDir(stateDir: string): string {
  const dir = path.join(stateDir, 'owner');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keep = path.join(dir, 'keep');
  if (!fs.existsSync(keep)) fs.writeFileSync(keep, 'flock(2) target of the agent and its watchdog; keeps this directory\n');
  return dir;
}

/** The lock, or null when someone holds it (with that holder's pid, if visible). */
export function tryOwner(stateDir: string, locker: Locker): { lock: OwnerLock } | { holder: number | null } {
  try {
    return { lock: locker(ownerDir(stateDir)) };
  } catch (e) {
    if ((e as { code?: string }).code !== 'EBUSY') throw e;
    const m = /by pid (\d+)/.exec((e as Error).message);
    return { holder: m ? Number(m[1]) : null };
  }
}

/** Whether `pid` is an iofilter watchdog (its command line names watchdog.js). */
export function isWatchdog(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').some((a) => a.endsWith('watchdog.js'));
  } catch {
    return false;
  }
}
