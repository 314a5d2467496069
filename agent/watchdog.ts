#!/usr/bin/env node
// iofilter watchdog: holds the TTLs of faults the kernel does not expire (dm tables)
// when the agent is gone. Started detached by the agent (its own session and process
// group, so a kill of the agent's group spares it) with the agent's state dir. While
// the agent runs it waits for the state dir's owner lock; when the agent dies the
// kernel drops the lock, the watchdog takes it and restores each fault at its
// deadline with the agent's own restore code, then exits once no fault is left. A
// restarting agent tells it to stop (SIGTERM) and takes over.
import { DmBackend } from './backends/dm/backend';
import { Dmsetup, realExec } from './backends/dm/dmsetup';
import { flockLocker, OwnerLock } from './backends/dm/lock';
import { StateDir, systemClock } from './backends/dm/state';
import { createLogger } from './log';
import * as os from 'node:os';

const POLL_MS = 200;

async function main(): Promise<void> {
  const i = process.argv.indexOf('--state-dir');
  const stateDir = i > 0 ? process.argv[i + 1] : '';
  if (!stateDir?.startsWith('/')) {
    process.stderr.write('usage: watchdog.js --state-dir /absolute/dir\n');
    process.exit(2);
  }
  const log = createLogger('info').child({ watchdog: process.pid, stateDir });
  const state = new StateDir(stateDir);
  const dm = new DmBackend({ state, dm: new Dmsetup(realExec()), clock: systemClock, release: os.release(), log });
  let stopping = false;
  let lock: OwnerLock | null = null;
  const quit = (why: string) => {
    lock?.release();
    log.info({ why }, 'watchdog exits');
    process.exit(0);
  };
  process.on('SIGTERM', () => {
    stopping = true; // finish a restore in progress, then go: the agent takes over
  });
  log.info('watchdog started');
  for (;;) {
    if (stopping) quit('asked to stop (an agent takes over)');
    if (!lock) {
      if (!state.faults().some((f) => f.deadline)) quit('no fault with a deadline left');
      const r = await flockLocker(stateDir);
      if ('lock' in r) {
        lock = r.lock;
        log.info('state dir taken: the agent is gone, holding the deadlines');
      }
    }
    if (lock) {
      const n = await dm.restoreExpired();
      if (n) log.info({ restored: n }, 'expired dm faults restored');
      if (!state.faults().some((f) => f.deadline)) {
        lock.release();
        lock = null;
        // an agent may have set a fault just now: look once more before leaving
        if (!state.faults().some((f) => f.deadline)) quit('no fault with a deadline left');
        continue;
      }
    }
    const wait = lock ? Math.max(10, Math.min(POLL_MS, dm.nextDeadlineMs())) : POLL_MS;
    await new Promise((r) => setTimeout(r, wait));
  }
}

main().catch((e) => {
  process.stderr.write(`iofilter watchdog: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
