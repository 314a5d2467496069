// The per-disk debugfs file of the kernel's block error injection
// (<debugfs>/block/<disk>/error_injection, mode 0600): reading it lists the disk's
// rules; each write(2) is one command (`add,...` or `removeall`) that the kernel parses
// whole and fails with EINVAL/ERANGE/ENODEV, so commands go one per write. A change's
// commands are written back to back on one descriptor, synchronously: while a list is
// rebuilt (removeall, then the adds) the rules are briefly incomplete, and nothing of
// the event loop runs in between to stretch that window.
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface InjectionFiles {
  /** Whether the disk has the file. */
  exists(disk: string): boolean;
  /** The file's content (the rule list, newest first). */
  read(disk: string): string;
  /** Writes each command with its own write(2); throws on the first the kernel rejects, with .code and the command's index. */
  write(disk: string, commands: string[]): void;
}

export class InjectionWriteError extends Error {
  constructor(
    readonly code: string,
    readonly index: number,
    readonly command: string,
    message: string,
  ) {
    super(message);
  }
}

export const fileOf = (debugfs: string, disk: string) => path.join(debugfs, 'block', disk, 'error_injection');

/** The real files under a mounted debugfs. */
export function debugfsFiles(debugfs: string): InjectionFiles {
  return {
    exists: (disk) => fs.existsSync(fileOf(debugfs, disk)),
    read: (disk) => fs.readFileSync(fileOf(debugfs, disk), 'utf8'),
    write(disk, commands) {
      if (!commands.length) return;
      const file = fileOf(debugfs, disk);
      const fd = fs.openSync(file, 'w');
      try {
        commands.forEach((c, i) => {
          try {
            const b = Buffer.from(c);
            if (fs.writeSync(fd, b) !== b.length) throw Object.assign(new Error('short write'), { code: 'EIO' });
          } catch (e) {
            const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
            throw new InjectionWriteError(code, i, c, `${file}: the kernel refused "${c}" (${code})`);
          }
        });
      } finally {
        fs.closeSync(fd);
      }
    },
  };
}
