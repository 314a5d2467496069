// What every test tier needs: the repository root and a free loopback port.
import * as net from 'node:net';
import * as path from 'node:path';
import { findUp } from '../../common/find-up';

/** The repository root, from the source tree (ts-jest) or from dist/ alike. */
export const ROOT = path.dirname(findUp(__dirname, 'package.json')!);

/** A loopback TCP port that was free a moment ago (bound, then closed: nothing listens). */
export async function freePort(from?: { min: number; max: number }): Promise<number> {
  for (;;) {
    const want = from ? from.min + Math.floor(Math.random() * (from.max - from.min)) : 0;
    const port = await tryPort(want).catch((e: NodeJS.ErrnoException) => {
      if (from && e.code === 'EADDRINUSE') return 0;
      throw e;
    });
    if (port) return port;
  }
}

function tryPort(want: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(want, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}
