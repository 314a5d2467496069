// `iofilterctl --json ...` as a subprocess (dist/client/cli.js) for host-tier tests of
// `run` and `halt`: every event as it is printed, so a test can act at a given point of
// a run (signal it, look at the agents), then the exit code, events and stderr.
import { ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { ROOT } from './common';

const CLI = path.join(ROOT, 'dist', 'client', 'cli.js');

export type Event = Record<string, any> & { event: string };
export interface Ran {
  code: number | null;
  events: Event[];
  stderr: string;
}

/** Runs the CLI with --json; `onEvent` sees each event as it is printed (and may signal the process). */
export function ctl(args: string[], onEvent?: (e: Event, child: ChildProcess) => void | Promise<void>): Promise<Ran> {
  const child = spawn(process.execPath, [CLI, '--json', '--timeout', '5s', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const events: Event[] = [];
  let stderr = '';
  const pending: Promise<void>[] = [];
  child.stderr!.on('data', (b) => (stderr += b));
  readline.createInterface({ input: child.stdout! }).on('line', (l) => {
    const e = JSON.parse(l) as Event;
    events.push(e);
    if (onEvent) pending.push(Promise.resolve(onEvent(e, child)));
  });
  return new Promise((resolve, reject) =>
    child.once('close', (code) => Promise.all(pending).then(() => resolve({ code, events, stderr }), reject)),
  );
}

/** Runs the CLI and sends it SIGINT at the first health check of `step`; `sent`: it got that far. */
export async function ctlInterruptedAt(step: string, args: string[]): Promise<Ran & { sent: boolean }> {
  let sent = false;
  const ran = await ctl(args, (e, child) => {
    if (!sent && e.event === 'check' && e.step === step) {
      sent = true;
      child.kill('SIGINT');
    }
  });
  return { ...ran, sent };
}
