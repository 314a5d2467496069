// One agent per pin dir: a second agent started on the pin dir a running agent holds
// exits on its own, non-zero, before doing anything else, and says on stderr which pin
// dir and which pid hold it; it changes nothing, and the first agent keeps serving
// with its filter in force, still counting the I/O it would fail (observe mode: real
// EIO is the VM tier's). Needs root and `npm run build`.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { IoFilterClient } from '../../client';
import { AGENT_MAIN, RunningAgent, startAgent } from '../helpers/agent';
import { freePort } from '../helpers/common';
import { createLoop, directIo, LoopDevice } from '../helpers/loop';
import { BUILT, describeIf, hostUnavailableReason } from '../helpers/tier';

const d = describeIf(hostUnavailableReason(BUILT.agent));

d('one agent per pin dir', () => {
  const pinDir = `/sys/fs/bpf/iofilter-lock-test-${process.pid}`;
  let first: RunningAgent;
  let client: IoFilterClient;
  let disk: LoopDevice;

  beforeAll(async () => {
    disk = createLoop(16);
    first = await startAgent({ pinDir, attach: 'observe' });
    client = new IoFilterClient(first.address, { timeoutMs: 10_000 });
  });
  afterAll(async () => {
    await client?.detach().catch(() => undefined);
    client?.close();
    await first?.stop();
    disk?.detach();
  });

  test('a second agent on the same pin dir exits 1 at once naming the dir and the holder; the first one\'s filter stays in force', async () => {
    const f = await client.setFilter({ device: disk.path, ranges: [{ start: 0, end: 99, ops: ['OP_WRITE'] }], ttlMs: 600_000 });
    const matched = async () => (await client.status()).filters.find((x) => x.id === f.id)?.ranges[0].matched;
    directIo(disk.path, 'write', 0, 8);
    expect(await matched()).toBe('1');
    const before = await client.status();
    const pins = fs.readdirSync(pinDir).sort();

    // the second agent as an operator starts it, on a port of its own
    const port = await freePort();
    const second = spawnSync(process.execPath, [AGENT_MAIN, '--listen', `127.0.0.1:${port}`, '--pin-dir', pinDir, '--attach', 'observe'], { encoding: 'utf8', timeout: 60_000 });
    expect({ status: second.status, signal: second.signal }).toEqual({ status: 1, signal: null }); // it ended by itself
    const message = `pin dir ${pinDir} is in use by pid ${first.proc.pid}: one iofilter agent per pin dir (stop it, or use another --pin-dir)`;
    const stderr = second.stderr.trimEnd().split('\n');
    expect(stderr.at(-1)).toBe(`iofilter-agent: ${message}`); // what a person at a terminal reads last
    // before it, its JSON log (stderr, as always): one fatal line. "At once": the lock is the
    // first thing it takes, so nothing came before it - no probe, no attach, no listener
    expect(stderr.slice(0, -1).map((l) => JSON.parse(l))).toEqual([expect.objectContaining({ level: 60, msg: 'cannot start', err: message })]);
    expect(second.stdout).toBe('');
    const probe = new IoFilterClient(`127.0.0.1:${port}`, { timeoutMs: 2000 });
    expect(await probe.status().then(() => 'OK', (e) => grpc.status[e.code])).toBe('UNAVAILABLE');
    probe.close();

    // the first agent: still serving, same program, same pins, its filter still counting
    expect(first.proc.exitCode).toBeNull();
    const after = await client.status();
    expect(after.state).toEqual(before.state);
    expect(fs.readdirSync(pinDir).sort()).toEqual(pins);
    directIo(disk.path, 'write', 8, 8); // I/O after the second agent's attempt
    expect(await matched()).toBe('2');
  });
});
