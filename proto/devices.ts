// The contract's rule of what a device string is ("MAJ:MIN" or a path under /dev) and
// which device numbers exist (Linux dev_t: 12-bit major, 20-bit minor; 0:0 is none).
// The agent (INVALID_ARGUMENT) and the CLI (usage error) both check through here, so
// the limits and the messages live in one place; whether the device exists is the
// agent's to find out.
import * as path from 'node:path';

export const MAX_MAJOR = 4095;
export const MAX_MINOR = (1 << 20) - 1;

/** Makes the caller's error type from a message (e.g. the agent's INVALID_ARGUMENT). */
export type ErrorFactory = (message: string) => Error;

export type DeviceSpec = { path: string } | { major: number; minor: number };

/** Parses "MAJ:MIN"; throws `fail(message)` naming the value. */
export function parseDevNumbers(s: string, fail: ErrorFactory): { major: number; minor: number } {
  const m = /^(\d{1,10}):(\d{1,10})$/.exec(s);
  if (!m) throw fail(`device "${s}" is neither MAJ:MIN (e.g. 259:2) nor a /dev path`);
  const [major, minor] = [Number(m[1]), Number(m[2])];
  if (major > MAX_MAJOR) throw fail(`device "${s}": major ${major} is out of range (0..${MAX_MAJOR})`);
  if (minor > MAX_MINOR) throw fail(`device "${s}": minor ${minor} is out of range (0..${MAX_MINOR})`);
  if (major === 0 && minor === 0) throw fail(`device "${s}": 0:0 is not a block device`);
  return { major, minor };
}

/**
 * What a request may name as a device: "MAJ:MIN", or an absolute path that stays under
 * /dev once normalised (returned normalised). Throws `fail(message)` for anything else.
 */
export function parseDeviceSpec(s: string, fail: ErrorFactory): DeviceSpec {
  if (typeof s !== 'string' || s.length === 0) throw fail('device is empty: give MAJ:MIN (e.g. 259:2) or a /dev path');
  if (s.length > 4096 || s.includes('\0')) throw fail('device is not a valid path or MAJ:MIN');
  if (!s.startsWith('/')) return parseDevNumbers(s, fail);
  const norm = path.posix.resolve(s);
  if (!norm.startsWith('/dev/')) throw fail(`device "${s}" must be MAJ:MIN or a path under /dev`);
  return { path: norm };
}
