// Whether the kernel's block error injection can run here, and the reason when not:
// debugfs mounted (the only interface), writable debugfs files allowed (kernel lockdown
// forbids them), and CONFIG_BLK_ERROR_INJECTION (mainline 7.2+), seen as the per-disk
// error_injection file every registered disk then has (block/blk-sysfs.c) and, for the
// reason, in the kernel's config.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import type { BackendCapability } from '../../../proto/gen/iofilter/v1/BackendCapability';

export interface ProbeEnv {
  debugfs: string; // where debugfs is expected (/sys/kernel/debug)
  mounts: string; // /proc/self/mounts
  lockdown: string; // /sys/kernel/security/lockdown
  release: string;
  /** Kernel config files tried in order (/proc/config.gz, /boot/config-R, /lib/modules/R/config). */
  configs?: string[];
}

export const DETAIL = 'per-disk rules: read, write, discard, write-zeroes; every status; probability 1/N; partitions (offset into the disk)';

const read = (f: string) => {
  try {
    return f.endsWith('.gz') ? zlib.gunzipSync(fs.readFileSync(f)).toString('utf8') : fs.readFileSync(f, 'utf8');
  } catch {
    return '';
  }
};

/** CONFIG_BLK_ERROR_INJECTION as the kernel's config has it: 'y', 'n' (not set), 'absent' (no such option: before 7.2), or 'unknown' (no config found). */
export function configOption(env: ProbeEnv): 'y' | 'n' | 'absent' | 'unknown' {
  const files = env.configs ?? ['/proc/config.gz', `/boot/config-${env.release}`, `/lib/modules/${env.release}/config`];
  for (const f of files) {
    const text = read(f);
    if (!text) continue;
    if (/^CONFIG_BLK_ERROR_INJECTION=y$/m.test(text)) return 'y';
    if (/^# CONFIG_BLK_ERROR_INJECTION is not set$/m.test(text)) return 'n';
    return 'absent';
  }
  return 'unknown';
}

const unavailable = (reason: string): BackendCapability => ({ backend: 'BACKEND_BLKINJECT', available: false, reason, detail: '' });

export function probeBlkinject(env: ProbeEnv): BackendCapability {
  const mounted = read(env.mounts)
    .split('\n')
    .some((l) => {
      const f = l.split(' ');
      return f[2] === 'debugfs' && path.resolve(f[1] ?? '') === path.resolve(env.debugfs);
    });
  if (!mounted) return unavailable(`debugfs is not mounted at ${env.debugfs} (mount -t debugfs none ${env.debugfs}); block error injection has no other interface`);
  const lock = /\[(\w+)\]/.exec(read(env.lockdown))?.[1];
  if (lock && lock !== 'none') return unavailable(`kernel lockdown (${lock}) forbids writing debugfs files, and block error injection is configured only there`);
  const blockDir = path.join(env.debugfs, 'block');
  const disks = fs.existsSync(blockDir) ? fs.readdirSync(blockDir) : [];
  if (disks.some((d) => fs.existsSync(path.join(blockDir, d, 'error_injection')))) return { backend: 'BACKEND_BLKINJECT', available: true, reason: '', detail: DETAIL };
  const cfg = configOption(env);
  if (!disks.length && cfg === 'y') return unavailable(`no disk is registered in ${blockDir} yet to check for error_injection (the kernel has CONFIG_BLK_ERROR_INJECTION=y)`);
  const why = { y: 'its config says CONFIG_BLK_ERROR_INJECTION=y', n: 'CONFIG_BLK_ERROR_INJECTION is not set', absent: 'its config has no CONFIG_BLK_ERROR_INJECTION (added in Linux 7.2)', unknown: 'no kernel config found to say why' }[cfg];
  return unavailable(
    `this kernel (${env.release}) has no block error injection: no disk in ${blockDir} has an error_injection file (${why}). ` +
      'It needs CONFIG_BLK_ERROR_INJECTION (Linux 7.2+; Debian sid 7.2 ships it off)',
  );
}
