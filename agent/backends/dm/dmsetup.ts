// dmsetup, the command-line face of libdevmapper, run with argument arrays (never a
// shell) and a timeout on every call. Chosen over linking libdevmapper into the addon:
// it is on every host that has LVM, its output is the format users and LVM's own tests
// read, and a hung ioctl (a suspend waiting for a stuck disk) stays in a child process
// that can be abandoned instead of blocking the agent's thread pool.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';

export interface ExecResult {
  stdout: string;
  stderr: string;
}

/** Runs dmsetup with `args` (stdin: `input`); rejects with DmsetupError on a non-zero exit or the timeout. */
export type DmExec = (args: string[], opts: { input?: string; timeoutMs: number }) => Promise<ExecResult>;

export class DmsetupError extends Error {
  constructor(
    message: string,
    readonly timedOut = false,
  ) {
    super(message);
  }
}

/** Without a udev daemon (containers, the test VM) libdevmapper must make /dev/mapper nodes itself. */
export const hasUdev = () => fs.existsSync('/run/udev/control');

export function realExec(binary = 'dmsetup'): DmExec {
  const noUdev = !hasUdev();
  return (args, { input, timeoutMs }) =>
    new Promise((resolve, reject) => {
      const argv = noUdev ? ['--noudevsync', ...args] : args;
      const child = spawn(binary, argv, {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: { ...process.env, ...(noUdev && { DM_DISABLE_UDEV: '1' }), LC_ALL: 'C' },
      });
      let stdout = '';
      let stderr = '';
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, timeoutMs);
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(new DmsetupError(`dmsetup ${args.join(' ')}: ${e.message}`));
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        if (timedOut) reject(new DmsetupError(`dmsetup ${args.join(' ')}: no answer in ${timeoutMs} ms`, true));
        else if (code !== 0) reject(new DmsetupError(`dmsetup ${args.join(' ')}: ${stderr.trim() || `exit ${code}`}`));
        else resolve({ stdout, stderr });
      });
      child.stdin.on('error', () => undefined); // a dmsetup that exits early: its exit status says why
      child.stdin.end(input ?? '');
    });
}

export interface Timeouts {
  /** Every call but suspend. */
  callMs: number;
  /** suspend waits for in-flight I/O: bounded, then resumed and reported. */
  suspendMs: number;
}

export class Dmsetup {
  constructor(
    readonly exec: DmExec,
    readonly timeouts: Timeouts = { callMs: 10_000, suspendMs: 10_000 },
  ) {}

  private run(args: string[], input?: string, timeoutMs = this.timeouts.callMs) {
    return this.exec(args, { input, timeoutMs });
  }

  /** The live table, exactly as the kernel prints it. */
  async table(name: string): Promise<string> {
    return (await this.run(['table', name])).stdout;
  }
  /** The inactive table slot: `dmsetup table --inactive`. */
  async inactive(name: string): Promise<string> {
    return (await this.run(['table', '--inactive', name])).stdout;
  }
  /** Loads `table` into the inactive slot (from stdin: tables may have many lines). */
  async load(name: string, table: string): Promise<void> {
    await this.run(['load', name], table);
  }
  /** Suspends without freezing the filesystem; waits for in-flight I/O, bounded. */
  async suspend(name: string): Promise<void> {
    await this.run(['suspend', '--nolockfs', name], undefined, this.timeouts.suspendMs);
  }
  async resume(name: string): Promise<void> {
    await this.run(['resume', name]);
  }
  /** Drops the inactive table. */
  async clear(name: string): Promise<void> {
    await this.run(['clear', name]);
  }
  async create(name: string, table: string): Promise<void> {
    await this.run(['create', name], table);
  }
  async remove(name: string): Promise<void> {
    await this.run(['remove', name]);
  }
  /** Open count and suspended state (`dmsetup info -c`). */
  async info(name: string): Promise<{ open: number; suspended: boolean; devno: string }> {
    const out = (await this.run(['info', '-c', '--noheadings', '--separator', ';', '-o', 'open,attr,major,minor', name])).stdout.trim();
    const [open, attr, maj, min] = out.split(';');
    return { open: Number(open), suspended: attr.includes('s'), devno: `${maj}:${min}` };
  }
  /** Loaded targets and their versions (`dmsetup targets`). */
  async targets(): Promise<Map<string, string>> {
    const out = (await this.run(['targets'])).stdout;
    const m = new Map<string, string>();
    for (const line of out.split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f.length >= 2) m.set(f[0], f[1].replace(/^v/, ''));
    }
    return m;
  }
}
