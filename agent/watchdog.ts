#!/usr/bin/env node
// iofilter watchdog: holds the TTLs of faults the kernel does not expire (dm tables,
// and every other persisted backend: backends/persisted.ts)
// when the agent is gone. Started detached by the agent (its own session and process
// group, so a kill of the agent's group spares it) with the agent's state dir. While
// the agent runs it waits for the state dir's owner lock; when the agent dies the
// kernel drops the lock, the watchdog takes it and restores each fault at its
// deadline with the agent's own restore code, then exits once no fault is left. A
// restarting agent tells it to stop (SIGTERM) and takes over.
import { Dmsetup, realExec } from './backends/dm/dmsetup';
import { flockLocker, OwnerLock } from './backends/dm/lock';
import { StateDir, systemClock } from './backends/dm/state';
import { persistedBackends } from './backends/persisted';
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
  const { all } = persistedBackends({ state, dmsetup: new Dmsetup(realExec()), clock: systemClock, release: os.release(), log });
  const pending = () => all.some((b) => b.hasDeadlines());
  // what each backend needs to know of the host (dm targets, debugfs, cgroup2) before it restores
  for (const b of all) await b.probe();
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
      if (!pending()) quit('no fault with a deadline left');
      const r = await flockLocker(stateDir);
      if ('lock' in r) {
        lock = r.lock;
        log.info('state dir taken: the agent is gone, holding the deadlines');
      }
    }
    if (lock) {
      let n = 0;
      for (const b of all) n += await b.restoreExpired();
      if (n) log.info({ restored: n }, 'expired faults restored');
      if (!pending()) {
        lock.release();
        lock = null;
        // an agent may have set a fault just now: look once more before leaving
        if (!pending()) quit('no fault with a deadline left');
        continue;
      }
    }
    const wait = lock ? Math.max(10, Math.min(POLL_MS, ...all.map((b) => b.nextDeadlineMs()))) : POLL_MS;
    await new Promise((r) => setTimeout(r, wait));
  }
}

main().catch((e) => {
  process.stderr.write(`iofilter watchdog: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
