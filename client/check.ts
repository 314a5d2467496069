// The health check of an experiment plan: one shell command on the control host, with
// a deadline. Exit 0 is healthy; anything else (exit code, signal, deadline) is not.
import { spawn } from 'node:child_process';

export interface CheckResult {
  ok: boolean;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  ms: number;
  /** The last line the command printed (stdout or stderr), at most 200 characters. */
  output: string;
}

const KEEP_BYTES = 16 * 1024;

/**
 * Runs `command` with /bin/sh -c in its own process group, so that a deadline or
 * `stop` ends the whole pipeline it started, not just the shell. `env` is added to
 * this process's environment.
 */
export function runCheck(command: string, o: { timeoutMs: number; cwd?: string; env?: Record<string, string>; stop?: AbortSignal }): Promise<CheckResult> {
  const { timeoutMs, stop } = o;
  const started = Date.now();
  return new Promise((resolve) => {
    let out = '';
    let timedOut = false;
    const child = spawn('/bin/sh', ['-c', command], { detached: true, stdio: ['ignore', 'pipe', 'pipe'], cwd: o.cwd, env: { ...process.env, ...o.env } });
    const keep = (d: Buffer) => (out = (out + d.toString('utf8')).slice(-KEEP_BYTES));
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const killGroup = () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, timeoutMs);
    stop?.addEventListener('abort', killGroup, { once: true });
    const finish = (exitCode: number | null, signal: string | null, err?: Error) => {
      clearTimeout(timer);
      stop?.removeEventListener('abort', killGroup);
      const last = err ? err.message : (out.trimEnd().split('\n').pop() ?? '');
      resolve({ ok: !err && !timedOut && exitCode === 0, exitCode, signal, timedOut, ms: Date.now() - started, output: last.slice(0, 200) });
    };
    child.once('error', (e) => finish(null, null, e));
    // 'close' (not 'exit'): the output is complete
    child.once('close', (code, signal) => finish(code, signal));
  });
}
