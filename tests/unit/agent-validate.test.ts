// Every bad request gets the fitting gRPC code and a message naming the field and the
// value - over real gRPC against an in-process agent (fake kernel, fake sysfs) - and
// changes nothing.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { status } from '@grpc/grpc-js';
import pino from 'pino';
import { resolveConfig } from '../../agent/config';
import { Agent, createAgent } from '../../agent/server';
import { IoFilterClient } from '../../client';
import type { SetFilterRequest } from '../../proto/gen/iofilter/v1/SetFilterRequest';
import { fakeKernel, fakeSysfs } from '../helpers/fake-kernel';

let agent: Agent;
let client: IoFilterClient;
const kernel = fakeKernel();

beforeAll(async () => {
  const cfg = resolveConfig({ listen: '127.0.0.1:0', attach: 'observe', pinDir: '/sys/fs/bpf/unused' });
  agent = await createAgent(cfg, pino({ level: 'silent' }), kernel, fakeSysfs());
  client = new IoFilterClient(agent.address, { timeoutMs: 5000 });
});
afterAll(async () => {
  client.close();
  await agent.stop(1000);
});

const range = (start: number | string, end: number | string, ops: string[] = ['OP_WRITE']) => ({ start, end, ops });
const tooMany = Array.from({ length: 65 }, (_, i) => range(i * 10, i * 10 + 1));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-notdev-'));

const cases: [string, SetFilterRequest, keyof typeof status, RegExp][] = [
  ['empty device', { device: '', wholeDeviceOps: ['OP_WRITE'] }, 'INVALID_ARGUMENT', /device is empty/],
  ['"8"', { device: '8', wholeDeviceOps: ['OP_WRITE'] }, 'INVALID_ARGUMENT', /device "8" is neither MAJ:MIN/],
  ['"8:"', { device: '8:', wholeDeviceOps: ['OP_WRITE'] }, 'INVALID_ARGUMENT', /device "8:" is neither MAJ:MIN/],
  ['"a:b"', { device: 'a:b', wholeDeviceOps: ['OP_WRITE'] }, 'INVALID_ARGUMENT', /device "a:b"/],
  ['"4294967296:0"', { device: '4294967296:0', wholeDeviceOps: ['OP_WRITE'] }, 'INVALID_ARGUMENT', /major 4294967296 is out of range/],
  ['"0:0"', { device: '0:0', wholeDeviceOps: ['OP_WRITE'] }, 'INVALID_ARGUMENT', /0:0 is not a block device/],
  ['a device that does not exist', { device: '7:99', wholeDeviceOps: ['OP_WRITE'] }, 'NOT_FOUND', /no block device 7:99/],
  ['a /dev path that does not exist', { device: '/dev/iofilter-nonexistent', wholeDeviceOps: ['OP_WRITE'] }, 'NOT_FOUND', /does not exist/],
  ['start > end', { device: '7:0', ranges: [range(10, 5)] }, 'INVALID_ARGUMENT', /ranges\[0\]: start 10 > end 5/],
  ['end beyond the device', { device: '7:1', ranges: [range(0, 131072)] }, 'INVALID_ARGUMENT', /ranges\[0\]: end 131072 is beyond the last sector 131071 of loop0p1/],
  ['one range too many', { device: '7:0', ranges: tooMany }, 'INVALID_ARGUMENT', /ranges: 65 given, limit 64/],
  ['unknown op', { device: '7:0', ranges: [range(0, 1, ['OP_UNSPECIFIED'])] }, 'INVALID_ARGUMENT', /ranges\[0\]\.ops: unknown op "OP_UNSPECIFIED"/],
  ['unknown op number', { device: '7:0', ranges: [range(0, 1, [42 as unknown as string])] }, 'INVALID_ARGUMENT', /unknown op 42/],
  ['no op for a range', { device: '7:0', ranges: [range(0, 1, [])] }, 'INVALID_ARGUMENT', /ranges\[0\]\.ops: select at least one/],
  ['no op for the whole device', { device: '7:0' }, 'INVALID_ARGUMENT', /whole_device_ops: select at least one/],
  ['ranges and whole-device ops', { device: '7:0', ranges: [range(0, 1)], wholeDeviceOps: ['OP_READ'] }, 'INVALID_ARGUMENT', /either ranges/],
  ['negative TTL', { device: '7:0', wholeDeviceOps: ['OP_WRITE'], ttlMs: -5 }, 'INVALID_ARGUMENT', /ttl_ms: -5 is negative/],
  ['huge TTL', { device: '7:0', wholeDeviceOps: ['OP_WRITE'], ttlMs: '9223372036854775807' }, 'INVALID_ARGUMENT', /ttl_ms: 9223372036854775807 exceeds this agent's maximum TTL of 3600000 ms/],
  ['TTL just over the maximum', { device: '7:0', wholeDeviceOps: ['OP_WRITE'], ttlMs: 3_600_001 }, 'INVALID_ARGUMENT', /exceeds this agent's maximum TTL/],
  ['probability 0', { device: '7:0', wholeDeviceOps: ['OP_WRITE'], probability: 0 }, 'INVALID_ARGUMENT', /probability: 0 must be in \(0, 1\]/],
  ['probability 1.5', { device: '7:0', wholeDeviceOps: ['OP_WRITE'], probability: 1.5 }, 'INVALID_ARGUMENT', /probability: 1.5 must be in \(0, 1\]/],
  ['probability NaN', { device: '7:0', wholeDeviceOps: ['OP_WRITE'], probability: NaN }, 'INVALID_ARGUMENT', /probability: NaN/],
  ['a path that is not a block device (/dev/null)', { device: '/dev/null', wholeDeviceOps: ['OP_WRITE'] }, 'INVALID_ARGUMENT', /"\/dev\/null" is not a block device/],
  ['a path outside /dev', { device: '/etc/passwd', wholeDeviceOps: ['OP_WRITE'] }, 'INVALID_ARGUMENT', /must be MAJ:MIN or a path under \/dev/],
  ['a path escaping /dev', { device: '/dev/../etc/passwd', wholeDeviceOps: ['OP_WRITE'] }, 'INVALID_ARGUMENT', /under \/dev/],
  ['a directory', { device: '/dev/', wholeDeviceOps: ['OP_WRITE'] }, 'INVALID_ARGUMENT', /not a block device|under \/dev/],
  ['a directory outside /dev', { device: dir, wholeDeviceOps: ['OP_WRITE'] }, 'INVALID_ARGUMENT', /under \/dev/],
];

describe('SetFilter: bad requests', () => {
  test.each(cases)('%s -> %s', async (_name, req, code, msg) => {
    const before = kernel.filterer!.puts;
    const err = await client.setFilter(req).then(() => null, (e) => e);
    expect(err).not.toBeNull();
    expect(status[err.code]).toBe(code);
    expect(err.details).toMatch(msg);
    expect(kernel.filterer!.puts).toBe(before); // nothing reached the kernel
  });

  test('a good request after all of them is stored, and only it', async () => {
    const f = await client.setFilter({ device: '7:1', ranges: [range(0, 99, ['OP_WRITE', 'OP_READ'])], ttlMs: 60_000, probability: 0.5, maxFailures: 3 }, 'full');
    expect(f).toMatchObject({ device: { major: 7, minor: 1, name: 'loop0p1', diskName: 'loop0', partition: true, startSector: '2048' }, hasExpiry: true, probability: 0.5, maxFailures: '3' });
    expect(f.ranges).toHaveLength(1);
    expect(f.ranges[0]).toMatchObject({ start: '0', end: '99' });
    expect([...f.ranges[0].ops].sort()).toEqual(['OP_READ', 'OP_WRITE']);
    const st = await client.status();
    expect(st.filters).toHaveLength(1);
  });

  test('no TTL asked: the default TTL is applied (filters without TTL are not allowed by default)', async () => {
    const f = await client.setFilter({ device: '7:0', wholeDeviceOps: ['OP_WRITE'] });
    expect(f.hasExpiry).toBe(true);
    expect(Number(f.remainingMs)).toBe(3_600_000);
  });
});

describe('other RPCs', () => {
  test('DeleteFilter: bad device -> INVALID_ARGUMENT; unknown -> existed false', async () => {
    const err = await client.deleteFilter('8:').then(() => null, (e) => e);
    expect(status[err.code]).toBe('INVALID_ARGUMENT');
    expect(await client.deleteFilter('7:99')).toMatchObject({ existed: false });
  });
  test('Attach: a mode the kernel lacks -> FAILED_PRECONDITION with the reason (when not attached)', async () => {
    await client.detach();
    const err = await client.attach('fmod_ret').then(() => null, (e) => e);
    expect(status[err.code]).toBe('FAILED_PRECONDITION');
    expect(err.details).toMatch(/CONFIG_FUNCTION_ERROR_INJECTION/);
    const e2 = await client.setFilter({ device: '7:0', wholeDeviceOps: ['OP_WRITE'] }).then(() => null, (e) => e);
    expect(status[e2.code]).toBe('FAILED_PRECONDITION');
    expect(e2.details).toMatch(/not attached.*Attach first/);
    expect((await client.attach('observe')).mode).toBe('MODE_OBSERVE');
    expect((await client.attach('fmod_ret')).mode).toBe('MODE_OBSERVE'); // idempotent: already attached
  });
});
