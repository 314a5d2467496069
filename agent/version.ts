// The agent's version, from package.json (source and dist layouts alike).
import * as fs from 'node:fs';
import * as path from 'node:path';

function find(): string {
  for (let dir = __dirname, i = 0; i < 4; i++, dir = path.dirname(dir)) {
    const p = path.join(dir, 'package.json');
    if (fs.existsSync(p)) return JSON.parse(fs.readFileSync(p, 'utf8')).version;
  }
  return 'unknown';
}

export const version = find();
