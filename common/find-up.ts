// Finds a file by walking up from a directory: how code in the source tree (ts-jest)
// and in the build (dist/) alike locates the repository's files.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The first `dir/rel`, `dir/../rel`, ... that exists, or null at the filesystem root. */
export function findUp(dir: string, rel: string): string | null {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    const candidate = path.join(d, rel);
    if (fs.existsSync(candidate)) return candidate;
    if (d === path.dirname(d)) return null;
  }
}
