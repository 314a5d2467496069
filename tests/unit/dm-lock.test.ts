// The state dir's owner lock (flock(1) held by a child on a pipe): a second taker is
// told the holder's pid; release, or the owner's death, frees it for the next.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { flockLocker } from '../../agent/backends/dm/lock';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-lock-'));

async function takeWithin(ms: number) {
  const end = Date.now() + ms;
  for (;;) {
    const r = await flockLocker(dir);
    if ('lock' in r || Date.now() > end) return r;
    await new Promise((res) => setTimeout(res, 50));
  }
}

test('taken once; a second taker sees the holder; release frees it', async () => {
  const a = await flockLocker(dir);
  expect('lock' in a).toBe(true);
  expect(await flockLocker(dir)).toEqual({ holder: process.pid });
  if ('lock' in a) a.lock.release();
  const b = await takeWithin(10_000);
  expect('lock' in b).toBe(true);
  if ('lock' in b) b.lock.release();
});

test('the owner SIGKILLed: the lock is free', async () => {
  await takeWithin(10_000).then((r) => 'lock' in r && r.lock.release());
  // another process takes it and is killed
  const script = `require(${JSON.stringify(require.resolve('../../dist/agent/backends/dm/lock'))}).flockLocker(${JSON.stringify(dir)}).then((r) => { console.log('lock' in r ? 'locked' : 'busy'); setInterval(() => {}, 1000); })`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((res) => child.stdout.on('data', (d) => String(d).includes('locked') && res()));
  expect(await flockLocker(dir)).toEqual({ holder: child.pid });
  child.kill('SIGKILL');
  const r = await takeWithin(10_000);
  expect('lock' in r).toBe(true);
  if ('lock' in r) r.lock.release();
});
