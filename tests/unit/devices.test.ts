// The device rule is one rule: the CLI's pre-check (checkDevice, a usage error) and the
// agent's check (resolveDevice, INVALID_ARGUMENT) accept and refuse the same strings with
// the same message, at the limits of a Linux dev_t (major <= 4095, minor < 2^20, not 0:0).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { status } from '@grpc/grpc-js';
import { resolveDevice } from '../../agent/devices';
import { RpcError } from '../../agent/errors';
import { checkDevice } from '../../client/args';
import { UsageError } from '../../client/errors';
import { MAX_MAJOR, MAX_MINOR } from '../../proto/devices';

// an empty sysfs: every well-formed device number is NOT_FOUND here, never INVALID_ARGUMENT
const sysfs = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-empty-sysfs-'));
afterAll(() => fs.rmSync(sysfs, { recursive: true, force: true }));

const thrown = (f: () => unknown): unknown => {
  try {
    f();
  } catch (e) {
    return e;
  }
  return null;
};

test.each([
  ['', /device is empty/],
  ['sda', /device "sda" is neither MAJ:MIN/],
  ['8:', /device "8:" is neither MAJ:MIN/],
  ['8:1:2', /device "8:1:2" is neither MAJ:MIN/],
  [`${MAX_MAJOR + 1}:0`, /major 4096 is out of range \(0\.\.4095\)/],
  [`8:${MAX_MINOR + 1}`, /minor 1048576 is out of range \(0\.\.1048575\)/],
  ['0:0', /0:0 is not a block device/],
  ['/dev/', /must be MAJ:MIN or a path under \/dev/],
  ['/dev/../etc/passwd', /must be MAJ:MIN or a path under \/dev/],
  ['x\0y', /not a valid path or MAJ:MIN/],
])('%j: the CLI and the agent refuse it with one message', (dev, message) => {
  const cli = thrown(() => checkDevice(dev));
  const agent = thrown(() => resolveDevice(dev, sysfs));
  expect(cli).toBeInstanceOf(UsageError);
  expect(agent).toBeInstanceOf(RpcError);
  expect((agent as RpcError).code).toBe(status.INVALID_ARGUMENT);
  expect((cli as Error).message).toMatch(message);
  expect((cli as Error).message).toBe((agent as Error).message);
});

test.each([`${MAX_MAJOR}:${MAX_MINOR}`, '0:1', '1:0', '259:2'])('%s: both accept it (the agent then looks for it: NOT_FOUND here)', (dev) => {
  expect(checkDevice(dev)).toBe(dev);
  const agent = thrown(() => resolveDevice(dev, sysfs));
  expect(agent).toBeInstanceOf(RpcError);
  expect((agent as RpcError).code).toBe(status.NOT_FOUND);
});
