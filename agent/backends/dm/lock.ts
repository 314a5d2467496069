// One writer of a state dir at a time: the agent while it runs, else the watchdog.
// The lock is flock(2) on <stateDir>/owner/lock, held by a `flock` child whose stdin is
// a pipe from its owner: when the owner dies (SIGKILL included) the pipe closes, the
// child exits and the kernel drops the lock, so the waiting watchdog takes over at
// once. (The addon's directory lock needs bpffs; a state dir is an ordinary directory.)
// The owner writes its pid to <stateDir>/owner/holder, so a starting agent can tell a
// watchdog (told to stop) from another agent (an error).
import { ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface OwnerLock {
  release(): void;
}
/** Takes the lock on a state dir without waiting: the lock, or who holds it. */
export type Locker = (stateDir: string) => Promise<{ lock: OwnerLock } | { holder: number | null }>;

export function ownerDir(stateDir: string): string {
  const dir = path.join(stateDir, 'owner');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

const BUSY = 75;

/** The flock(1) locker. */
export const flockLocker: Locker = (stateDir) =>
  new Promise((resolve, reject) => {
    const dir = ownerDir(stateDir);
    const child: ChildProcessWithoutNullStreams = spawn('flock', ['--nonblock', '--conflict-exit-code', String(BUSY), path.join(dir, 'lock'), '-c', 'echo locked; exec cat >/dev/null'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let done = false;
    child.stdin.on('error', () => undefined);
    child.stdout.on('data', (d) => {
      out += d;
      if (done || !out.includes('locked')) return;
      done = true;
      fs.writeFileSync(path.join(dir, 'holder'), `${process.pid}\n`);
      child.unref();
      (child.stdout as unknown as { unref?: () => void }).unref?.();
      (child.stderr as unknown as { unref?: () => void }).unref?.();
      (child.stdin as unknown as { unref?: () => void }).unref?.();
      // closing the pipe ends cat, then flock: the lock goes with them
      resolve({ lock: { release: () => child.stdin.destroy() } });
    });
    child.on('error', (e) => {
      if (!done) reject(new Error(`flock(1) for ${dir}: ${e.message}`));
      done = true;
    });
    child.on('exit', (code) => {
      if (done) return;
      done = true;
      if (code === BUSY) resolve({ holder: holderOf(dir) });
      else reject(new Error(`flock(1) for ${dir} exited ${code}`));
    });
  });

function holderOf(dir: string): number | null {
  try {
    const pid = Number(fs.readFileSync(path.join(dir, 'holder'), 'utf8'));
    return pid > 0 ? pid : null;
  } catch {
    return null;
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
