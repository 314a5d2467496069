// TTL inside a time namespace: clock_gettime(CLOCK_BOOTTIME) there includes the
// namespace's offset, which the program's bpf_ktime_get_boot_ns() does not, so the
// binding must take it out (/proc/self/timens_offsets) or a filter's kernel expiry is
// off by the offset. A process holding the pin dir through the binding runs under
// `unshare --time --boottime OFFSET` (tests/helpers/binding-child.ts); this process, in
// the host's namespace, does the I/O. The filter must be counted by the kernel while the
// namespace says it is live, and no longer once the namespace says it has expired:
// with +1 day and no correction it would outlive its TTL by a day; with a negative
// offset larger than the TTL it would be expired from the start. Needs root,
// CONFIG_TIME_NS, util-linux unshare and `npm run build`.
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { ROOT } from '../helpers/common';
import { createLoop, directIo, LoopDevice } from '../helpers/loop';
import { BUILT, describeIf, hostUnavailableReason } from '../helpers/tier';
import { until } from '../helpers/wait';

const CHILD = 'dist/tests/helpers/binding-child.js';

function unavailable(): string | null {
  const host = hostUnavailableReason(BUILT.addon, CHILD);
  if (host) return host;
  if (!fs.existsSync('/proc/self/ns/time')) return 'this kernel has no time namespaces (CONFIG_TIME_NS): /proc/self/ns/time is missing';
  const probe = spawnSync('unshare', ['--time', '--fork', '--boottime', '1', 'true'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) return `\`unshare --time --boottime 1\` does not work here (util-linux >= 2.36 and CONFIG_TIME_NS): ${probe.error?.message ?? probe.stderr.trim()}`;
  return null;
}
const d = describeIf(unavailable());

const uptimeSeconds = () => Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]);

/** The binding child in a time namespace, and its line protocol. */
class NsChild {
  private readonly lines: string[] = [];
  private wake: (() => void) | null = null;
  stderr = '';
  readonly exited: Promise<number | null>;
  constructor(readonly proc: ChildProcess) {
    readline.createInterface({ input: proc.stdout! }).on('line', (l) => {
      this.lines.push(l);
      this.wake?.();
    });
    proc.stderr!.on('data', (b) => (this.stderr += b));
    this.exited = new Promise((r) => proc.once('exit', (code) => { r(code); this.wake?.(); }));
  }
  static start(offsetSeconds: number, pinDir: string): NsChild {
    // --kill-child: if unshare dies, so does the child holding the pin dir
    return new NsChild(spawn('unshare', ['--time', '--kill-child', '--boottime', String(offsetSeconds), process.execPath, path.join(ROOT, CHILD), pinDir], { stdio: ['pipe', 'pipe', 'pipe'] }));
  }
  async next(): Promise<Record<string, any>> {
    while (!this.lines.length) {
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) throw new Error(`the namespace child exited (${this.proc.exitCode ?? this.proc.signalCode}): ${this.stderr}`);
      await new Promise<void>((r) => (this.wake = r));
    }
    const v = JSON.parse(this.lines.shift()!);
    if (v.error) throw new Error(`the namespace child: ${v.error}`);
    return v;
  }
  call(cmd: object): Promise<Record<string, any>> {
    this.proc.stdin!.write(JSON.stringify(cmd) + '\n');
    return this.next();
  }
}

d('filter TTL from inside a time namespace (boottime offset)', () => {
  let disk: LoopDevice;
  const children: NsChild[] = [];
  const pinDir = (i: number) => `/sys/fs/bpf/iofilter-timens-test-${process.pid}-${i}`;
  let n = 0;

  beforeAll(() => {
    disk = createLoop(16);
  });
  afterAll(async () => {
    for (const c of children) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
    await Promise.all(children.map((c) => c.exited));
    for (let i = 0; i < n; i++) fs.rmSync(pinDir(i), { recursive: true, force: true });
    disk?.detach();
  });

  test.each([
    ['+1 day (uncorrected, the filter would outlive its TTL by a day)', () => 86_400],
    ['-(uptime - 5 s) (uncorrected, the filter would be expired from the start)', () => -(Math.floor(uptimeSeconds()) - 5)],
  ])('boottime offset %s', async (_name, offsetOf) => {
    const offset = offsetOf();
    const child = NsChild.start(offset, pinDir(n++));
    children.push(child);
    // it really runs in a namespace with that offset
    expect(await child.next()).toMatchObject({ ready: true, boottimeOffset: String(BigInt(offset) * 1_000_000_000n) });

    const dev = { major: disk.major, minor: disk.minor };
    const counts = (f: Record<string, any>) => f.ranges.map((r: Record<string, string>) => `${r.matched}/${r.failed}`);
    const get = async () => (await child.call({ op: 'get', device: dev })).filter;
    const put = async (ttlMs: number) => {
      const { filter } = await child.call({ op: 'put', spec: { device: dev, disk: dev, offset: '0', size: String(disk.sizeSectors), ranges: [{ start: '0', end: '99', ops: ['write'] }], ttlMs } });
      expect(filter.remainingMs).toBeGreaterThan(0);
      expect(filter.remainingMs).toBeLessThanOrEqual(ttlMs);
      directIo(disk.path, 'write', 0, 8); // from outside the namespace
    };
    // One write while the filter is live in the namespace's view. The TTL that allows it
    // is found by trying: a try that ran out before its I/O is repeated 4x longer.
    let ttlMs = 2000;
    await put(ttlMs);
    while ((await get()).remainingMs === 0) {
      if (ttlMs > 60_000) throw new Error('one dd took over a minute: cannot test a TTL on this machine');
      await put((ttlMs *= 4));
    }
    // a negative offset larger than the TTL is what makes an uncorrected expiry lie in the past
    expect(offset > 0 || -offset * 1000 > ttlMs).toBe(true);
    expect(counts(await get())).toEqual(['1/1']); // the kernel counted it: live in its clock too

    await until(async () => (await get()).remainingMs === 0, 'the TTL to run out in the namespace', ttlMs + 60_000, 50);
    // the program's clock may be one tick behind (at most 10 ms, HZ >= 100): see iof_now_ns
    await new Promise((r) => setTimeout(r, 20));
    directIo(disk.path, 'write', 0, 8);
    expect(counts(await get())).toEqual(['1/1']); // and the kernel stopped with it

    child.proc.stdin!.end(JSON.stringify({ op: 'quit' }) + '\n');
    expect(await child.exited).toBe(0);
    // detached: no link left (the lock's release removes the pin dir once it is empty)
    expect(fs.existsSync(pinDir(n - 1)) ? fs.readdirSync(pinDir(n - 1)).filter((x) => x.startsWith('link_')) : []).toEqual([]);
  });
});
