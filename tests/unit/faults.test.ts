// Fault kinds end to end without a kernel: what the CLI and plans accept and refuse,
// what the agent validates, the ops each kind implies, the dm segments each kind
// becomes (and the kernels that lack them), and which backend `auto` picks for each.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import type * as native from '../../native';
import { faultFromWords } from '../../client/faults';
import { UsageError } from '../../client/errors';
import { EIO, faultFromWire, faultToWire, FaultSpec, impliedOps } from '../../agent/faults';
import { faultedTable, faultRanges, parseTable } from '../../agent/backends/dm/table';
import { toFilterSpec } from '../../agent/validate';
import { Backends, BpfView } from '../../agent/backends';
import { DmBackend } from '../../agent/backends/dm/backend';
import { Dmsetup } from '../../agent/backends/dm/dmsetup';
import { Clock, StateDir } from '../../agent/backends/dm/state';
import { resolveDevice } from '../../agent/devices';
import { describeFault, ERROR_STATUSES } from '../../proto/faults';
import type { Fault__Output } from '../../proto/gen/iofilter/v1/Fault';
import { FakeDm } from '../helpers/fake-dm';

const wire = (f: unknown) => f as Fault__Output;

describe('CLI and plan words', () => {
  test.each([
    [{ error: 'enospc' }, { error: { status: 'ERROR_STATUS_NOSPC' } }],
    [{ error: 'EIO' }, { error: { status: 'ERROR_STATUS_IOERR' } }],
    [{ error: 'medium' }, { error: { status: 'ERROR_STATUS_MEDIUM' } }],
    [{ delay: '50ms' }, { delay: { readMs: 50, writeMs: 50, flushMs: 50 } }],
    [{ delay: 'read=1s,flush=5ms' }, { delay: { readMs: 1000, writeMs: 0, flushMs: 5 } }],
    [{ throttle: 'wbps=1M,riops=100' }, { throttle: { rbps: '0', wbps: '1048576', riops: '100', wiops: '0' } }],
    [{ dropWrites: true }, { dropWrites: {} }],
    [{ corrupt: 'read,byte=1,value=0x55' }, { corrupt: { direction: 'CORRUPT_DIRECTION_READ', byte: 1, value: 0x55 } }],
    [{ corrupt: 'write,rate=1000' }, { corrupt: { direction: 'CORRUPT_DIRECTION_WRITE', perBillion: 1000 } }],
    [{}, undefined],
  ])('%j -> %j', (words, fault) => {
    expect(faultFromWords(words)).toEqual(fault);
  });

  test.each([
    [{ error: 'enospc', delay: '5ms' }, /--error and --delay: a filter has one fault kind/],
    [{ error: 'efoo' }, /bad --error "efoo": one of eio, enospc, etimedout, enodata/],
    [{ delay: '0ms' }, /must be more than 0/],
    [{ delay: '2h' }, /at most 1h/],
    [{ delay: 'read=5ms,read=6ms' }, /read given twice/],
    [{ delay: 'reads=5ms' }, /"reads=5ms" is not one of read=/],
    [{ throttle: 'wbps=max' }, /give at least one limit/],
    [{ throttle: 'wbps=1Q' }, /bad --throttle wbps "1Q"/],
    [{ corrupt: 'sideways' }, /start with read or write/],
    [{ corrupt: 'read' }, /give byte=N and value=V/],
    [{ corrupt: 'read,byte=0,value=1' }, /byte counts from 1/],
    [{ corrupt: 'read,byte=1,value=256' }, /a whole number up to 255/],
    [{ corrupt: 'read,rate=5,byte=1' }, /give rate, or byte and value, not both/],
  ])('%j is refused: %s', (words, why) => {
    expect(() => faultFromWords(words)).toThrow(UsageError);
    expect(() => faultFromWords(words)).toThrow(why);
  });

  test('every status has an errno word the CLI takes back', () => {
    for (const s of ERROR_STATUSES) expect(faultFromWords({ error: s.errno.toLowerCase() })).toEqual({ error: { status: s.wire } });
  });
});

describe('agent validation', () => {
  test('unset is error EIO; each kind round-trips through the wire', () => {
    expect(faultFromWire(null)).toEqual(EIO);
    const kinds: FaultSpec[] = [
      { kind: 'error', status: ERROR_STATUSES[2] },
      { kind: 'delay', readMs: 1, writeMs: 2, flushMs: 3 },
      { kind: 'throttle', rbps: 1n, wbps: 0n, riops: 0n, wiops: 7n },
      { kind: 'drop-writes' },
      { kind: 'corrupt', direction: 'write', byte: 9, value: 255, perBillion: 0 },
    ];
    for (const k of kinds) expect(faultFromWire(wire(faultToWire(k)))).toEqual(k);
  });

  test.each([
    [{ error: { status: 'ERROR_STATUS_BOGUS' } }, /fault.error.status: unknown status/],
    [{ delay: { readMs: 0, writeMs: 0, flushMs: 0 } }, /every delay is 0/],
    [{ delay: { readMs: 3_600_001 } }, /fault.delay.read_ms: 3600001 must be an integer in 0..3600000/],
    [{ throttle: { rbps: '0', wbps: '0' } }, /every limit is 0/],
    [{ throttle: { rbps: '-1' } }, /fault.throttle.rbps: "-1" is not an unsigned 64-bit integer/],
    [{ corrupt: { byte: 0, value: 0, perBillion: 0 } }, /which byte of each bio/],
    [{ corrupt: { byte: 1, value: 300 } }, /fault.corrupt.value: 300/],
    [{ corrupt: { byte: 1, perBillion: 5 } }, /either per_billion .* or byte and value/],
    [{ delay: { readMs: 1 }, dropWrites: {} }, /delay and dropWrites given: a filter has one fault kind/],
  ])('%j is INVALID_ARGUMENT: %s', (f, why) => {
    expect(() => faultFromWire(wire(f))).toThrow(why);
  });

  const dev = { major: 253, minor: 0, name: 'dm-0', size: 4096n, start: 0n, disk: { major: 253, minor: 0 } } as unknown as Parameters<typeof toFilterSpec>[1];
  const policy = { maxRanges: 16, ttl: { maxMs: 3_600_000, defaultMs: 600_000, allowNoTtl: false } };

  test('kinds imply their ops: none given takes them; given, they must be exactly those', () => {
    const drop: FaultSpec = { kind: 'drop-writes' };
    const s = toFilterSpec({ device: '253:0', ranges: [{ start: '0', end: '9', ops: [] }] } as never, dev, policy, null, drop);
    expect(s.ranges[0].ops).toEqual(impliedOps(drop));
    const whole = toFilterSpec({ device: '253:0', ranges: [], wholeDeviceOps: [] } as never, dev, policy, null, { kind: 'corrupt', direction: 'read', byte: 1, value: 0, perBillion: 0 });
    expect(whole.wholeOps).toEqual(['read']);
    expect(() => toFilterSpec({ device: '253:0', ranges: [{ start: '0', end: '9', ops: ['OP_READ'] }] } as never, dev, policy, null, drop)).toThrow(
      /ranges\[0\]\.ops: read: a drop writes .* fault acts on write,flush,discard,write_zeroes \(leave the ops out\)/,
    );
    // error still needs its ops chosen
    expect(() => toFilterSpec({ device: '253:0', ranges: [{ start: '0', end: '9', ops: [] }] } as never, dev, policy, null, EIO)).toThrow(/select at least one operation/);
  });
});

describe('dm segments per kind', () => {
  const segs = parseTable('0 1000 linear 7:0 0\n');
  const table = (f: FaultSpec, release = '6.12.0') => {
    const r = faultRanges([{ start: 100n, end: 199n, ops: impliedOps(f) ?? [] }], release, f);
    return typeof r === 'string' ? r : faultedTable(segs, r);
  };
  test('delay: read, write and flush delays apart, over the same device and offset', () => {
    expect(table({ kind: 'delay', readMs: 50, writeMs: 10, flushMs: 0 })).toBe('0 100 linear 7:0 0\n100 100 delay 7:0 100 50 7:0 100 10 7:0 100 0\n200 800 linear 7:0 200\n');
  });
  test('drop-writes: flakey drop_writes', () => {
    expect(table({ kind: 'drop-writes' })).toBe('0 100 linear 7:0 0\n100 100 flakey 7:0 100 0 1 1 drop_writes\n200 800 linear 7:0 200\n');
  });
  test('corrupt: corrupt_bio_byte and the rates from 6.5; before, refused with what the kernel does', () => {
    expect(table({ kind: 'corrupt', direction: 'read', byte: 3, value: 0x55, perBillion: 0 }, '6.5.0')).toContain('100 100 flakey 7:0 100 0 1 5 corrupt_bio_byte 3 r 85 0\n');
    expect(table({ kind: 'corrupt', direction: 'read', byte: 3, value: 0x55, perBillion: 0 }, '6.1.0')).toMatch(/corrupt reads: before Linux 6\.5 dm-flakey corrupts a read at completion through the bio's own iterator/);
    expect(table({ kind: 'corrupt', direction: 'write', byte: 3, value: 1, perBillion: 0 }, '6.1.0')).toMatch(/corrupt writes: before Linux 6\.5 dm-flakey changes the writer's own buffer/);
    expect(table({ kind: 'corrupt', direction: 'write', byte: 3, value: 1, perBillion: 0 }, '6.5.0')).toContain('flakey 7:0 100 0 1 5 corrupt_bio_byte 3 w 1 0\n');
    expect(table({ kind: 'corrupt', direction: 'read', byte: 0, value: 0, perBillion: 1000 }, '6.4.9')).toMatch(/random_read_corrupt needs Linux 6\.5 or later, this kernel is 6\.4\.9/);
    expect(table({ kind: 'corrupt', direction: 'read', byte: 0, value: 0, perBillion: 1000 }, '7.2.13')).toContain('flakey 7:0 100 0 1 2 random_read_corrupt 1000\n');
  });
  test('error statuses other than EIO and throttle are not device-mapper\'s, with what would serve them', () => {
    expect(table({ kind: 'error', status: ERROR_STATUSES[1] })).toMatch(/error status ENOSPC: device-mapper's targets fail with EIO only; .*blkinject backend/);
    expect(table({ kind: 'throttle', rbps: 1n, wbps: 0n, riops: 0n, wiops: 0n })).toMatch(/throttle backend \(cgroup v2 io.max\)/);
  });
});

describe('auto picks the backend by fault kind', () => {
  const clock: Clock = { bootId: () => 'b', boottimeMs: () => 1000, realtimeMs: () => 1000 };
  function setup() {
    const fake = new FakeDm();
    fake.add('vg-lv', '0 2048 linear 7:0 0\n');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-faults-'));
    const b = new Backends({ stateDir: dir } as never, pino({ level: 'silent' }), {
      dmsetup: new Dmsetup(fake.exec, { callMs: 1000, suspendMs: 1000 }),
      clock,
      release: '6.12.0',
      sysfs: fake.sysfs,
      locker: async () => ({ lock: { release: () => undefined } }) as never,
      spawnWatchdog: () => 0,
    });
    (b.dm.o as { devDir?: string }).devDir = fake.devDir;
    return { b, fake, dev: resolveDevice('253:0', fake.sysfs), state: new StateDir(dir) };
  }
  const enforcing: BpfView = { attached: true, enforcing: true, why: '', hasFilterOn: () => false };
  const spec = (dev: ReturnType<typeof resolveDevice>, ops: native.Op[]): native.FilterSpec => ({ device: dev, disk: dev, offset: 0n, size: dev.size, ranges: [{ start: 0n, end: 9n, ops }], ttlMs: 1000 });

  test('EIO goes to bpf when it enforces; every other kind to dm on a dm device; bpf asked for a delay refuses', async () => {
    const { b, dev } = setup();
    await b.start();
    expect(await b.choose('BACKEND_AUTO', spec(dev, ['read']), dev, enforcing, EIO)).toBe('bpf');
    const delay: FaultSpec = { kind: 'delay', readMs: 5, writeMs: 5, flushMs: 5 };
    expect(await b.choose('BACKEND_AUTO', spec(dev, impliedOps(delay)!), dev, enforcing, delay)).toBe('dm');
    await expect(b.choose('BACKEND_BPF', spec(dev, impliedOps(delay)!), dev, enforcing, delay)).rejects.toThrow(/backend bpf: the program at should_fail_bio fails with EIO only, not delay read 5 ms/);
    const enospc: FaultSpec = { kind: 'error', status: ERROR_STATUSES[1] };
    await expect(b.choose('BACKEND_AUTO', spec(dev, ['write']), dev, enforcing, enospc)).rejects.toThrow(/no backend can do error ENOSPC on .*: bpf: the program at should_fail_bio fails with EIO only.*dm: .*blkinject backend/);
  });

  test('a delay filter is in force as a dm-delay segment and Status carries its kind; delete restores the table', async () => {
    const { b, dev, fake } = setup();
    await b.start();
    const delay: FaultSpec = { kind: 'delay', readMs: 5, writeMs: 6, flushMs: 7 };
    const f = await b.dm.set(spec(dev, impliedOps(delay)!), dev, delay);
    expect(f.fault).toEqual({ delay: { readMs: 5, writeMs: 6, flushMs: 7 } });
    expect(describeFault(b.list()[0].fault)).toBe('delay read 5 ms, write 6 ms, flush 7 ms');
    expect(fake.devs.get('vg-lv')!.live).toBe('0 10 delay 7:0 0 5 7:0 0 6 7:0 0 7\n10 2038 linear 7:0 10\n');
    expect(await b.deleteFor({ id: f.id! })).toMatchObject({ existed: true, removed: 1 });
    expect(fake.devs.get('vg-lv')!.live).toBe('0 2048 linear 7:0 0\n');
  });
});

test('DmBackend records of agents before fault kinds read back as error EIO', async () => {
  const fake = new FakeDm();
  fake.add('vg-lv', '0 2048 linear 7:0 0\n');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-faults-old-'));
  const state = new StateDir(dir);
  const dm = new DmBackend({ state, dm: new Dmsetup(fake.exec, { callMs: 1000, suspendMs: 1000 }), clock: { bootId: () => 'b', boottimeMs: () => 0, realtimeMs: () => 0 }, release: '6.1.0', log: pino({ level: 'silent' }), sysfs: fake.sysfs });
  state.putFault({ version: 1, id: 0x8000_0000, name: 'vg-lv', devno: '253:0', original: '0 2048 linear 7:0 0\n', faulted: '0 2048 error\n', ranges: [], whole: true, deadline: null, createdUnixMs: 0 });
  expect(dm.list()[0].fault).toEqual({ error: { status: 'ERROR_STATUS_IOERR' } });
});

describe('plans take every kind (a delay ramp across steps)', () => {
  const { parsePlan, schedule } = jest.requireActual('../../client/plan') as typeof import('../../client/plan');
  const RAMP = `hosts: [db1]
steps:
  - name: slow
    set: { device: /dev/mapper/vg-data, ranges: ["0-2047"], delay: 10ms, backend: dm }
    hold: 1m
  - name: slower
    set: { device: /dev/mapper/vg-data, ranges: ["0-2047"], delay: "read=100ms,write=50ms" }
    hold: 1m
  - name: lost writes
    set: { device: /dev/mapper/vg-data, dropWrites: true }
    hold: 1m
  - name: enospc
    set: { device: /dev/mapper/vg-data, ops: [write], error: enospc }
    hold: 1m
`;
  test('each step carries its fault; kinds with their own ops need no ops', () => {
    const s = schedule(parsePlan(RAMP, 'ramp.yaml'), { hosts: [], concurrency: 8, timeoutMs: 1000 });
    expect(s.steps.map((x) => ({ ...x.requests[0], ttlMs: undefined }))).toEqual([
      { device: '/dev/mapper/vg-data', ranges: [{ start: '0', end: '2047', ops: [] }], fault: { delay: { readMs: 10, writeMs: 10, flushMs: 10 } }, backend: 'BACKEND_DM', ttlMs: undefined },
      { device: '/dev/mapper/vg-data', ranges: [{ start: '0', end: '2047', ops: [] }], fault: { delay: { readMs: 100, writeMs: 50, flushMs: 0 } }, ttlMs: undefined },
      { device: '/dev/mapper/vg-data', wholeDeviceOps: [], fault: { dropWrites: {} }, ttlMs: undefined },
      { device: '/dev/mapper/vg-data', wholeDeviceOps: ['OP_WRITE'], fault: { error: { status: 'ERROR_STATUS_NOSPC' } }, ttlMs: undefined },
    ]);
  });
  test.each([
    ['set: { device: "7:0", error: enospc }', /`ops` is missing/],
    ['set: { device: "7:0", delay: 5ms, dropWrites: true }', /steps\[0\]\.set\.delay and steps\[0\]\.set\.dropWrites: a filter has one fault kind/],
    ['set: { device: "7:0", dropWrites: false }', /dropWrites: expected true/],
    ['set: { device: "7:0", delay: fast }', /bad steps\[0\]\.set\.delay "fast"/],
    ['set: { device: "7:0", ops: [write], backend: zfs }', /backend: "zfs" is not one of auto, bpf, dm, blkinject, throttle/],
  ])('%s is refused', (set, why) => {
    expect(() => parsePlan(`hosts: [h]\nsteps:\n  - ${set}\n    hold: 1s\n`, 'p.yaml')).toThrow(why);
  });
});
