// The blkinject backend in the VM. On a kernel with CONFIG_BLK_ERROR_INJECTION (the 7.2
// test kernel): the agent attached to nothing serves error statuses through
// /sys/kernel/debug/block/DISK/error_injection, and a direct-I/O program (tests/vm/lib/
// dio.c) shows the errno an application gets for EIO, ENOSPC, ENODATA, ETIMEDOUT and
// EREMOTEIO, only inside the range, with I/O running elsewhere; partition offsets both
// through the partition and through the disk; reads-only and writes-only; chance=N
// failing about 1 in N (binomial bound); delete leaving an empty rule list; the TTL
// ended by the watchdog with the agent SIGKILLed, measured on the guest clock; and
// refusals leaving the file unchanged. On a kernel without it (Debian sid's stock 7.2,
// or a test kernel before 7.2): the capability says why, and --error enospc is refused
// naming what would work. (This commit holds only the second half, the one that ran.)
import * as grpc from '@grpc/grpc-js';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { ROOT } from '../helpers/common';
import { Guest, KERNEL } from '../helpers/guest';
import { describeIf } from '../helpers/tier';
import { vmUnavailableReason } from '../helpers/vm';

const d = describeIf(vmUnavailableReason());
jest.setTimeout(900_000);

async function refusalOf(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  const e = (await p.then(() => null, (x: unknown) => x)) as grpc.ServiceError | null;
  if (!e) throw new Error('expected a refusal, got none');
  return { code: e.code, details: e.details };
}

const STATE = '/dev/shm/iofilter-state';
const AGENT = ['--attach', 'none', '--state-dir', STATE];
const DIO = path.join(ROOT, 'build', 'dio-vm');
/** Test kernels from 7.2 have it (tests/vm/kernel.config.fragment); Debian's stock kernels do not. */
const HAS_IT = !KERNEL.startsWith('stock-') && Number(KERNEL.split('.')[0]) >= 7 && Number(KERNEL.split('.')[1]) >= 2;
const status = (s: string) => ({ error: { status: s } });

(HAS_IT ? describe.skip : d)(`VM blkinject backend on ${KERNEL}`, () => {
  let g: Guest;
  /** dio in the guest: "ok" or an errno name; with a repeat count, "ok=N ENODATA=M". */
  const dio = (dev: string, op: 'read' | 'write', sector: number, count = 8, repeat = 1) => g.vm.sh(`${DIO} ${dev} ${op} ${sector} ${count} ${repeat}`);

  beforeAll(async () => {
    const cc = spawnSync('cc', ['-O2', '-Wall', '-o', DIO, path.join(ROOT, 'tests', 'vm', 'lib', 'dio.c')], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`cc tests/vm/lib/dio.c: ${cc.stderr}`);
    g = await Guest.boot(AGENT);
  }, 900_000);

  afterAll(async () => {
    await g?.shutdown();
  }, 60_000);

  test('capability: unavailable with the reason; --error enospc refused naming what would work; nothing in force', async () => {
    const st = await g.client.status();
    const cap = st.backends.find((b) => b.backend === 'BACKEND_BLKINJECT');
    console.log(`blkinject on ${KERNEL} (${st.kernelRelease}): ${JSON.stringify(cap)}`);
    // Debian's config says so; a test kernel before 7.2 may have no config to read
    const cfg = KERNEL === 'stock-sid' ? /\(CONFIG_BLK_ERROR_INJECTION is not set\)/ : /\((its config has no CONFIG_BLK_ERROR_INJECTION \(added in Linux 7\.2\)|no kernel config found to say why)\)/;
    expect(cap).toMatchObject({ available: false, reason: expect.stringMatching(/^this kernel \(\S+\) has no block error injection: no disk in \/sys\/kernel\/debug\/block has an error_injection file/) });
    expect(cap!.reason).toMatch(cfg);
    expect(cap!.reason).toMatch(/It needs CONFIG_BLK_ERROR_INJECTION \(Linux 7\.2\+; Debian sid 7\.2 ships it off\)$/);
    const dev = g.parts[0].path;
    const auto = await refusalOf(g.client.setFilter({ device: dev, ranges: [{ start: 0, end: 7, ops: ['OP_WRITE'] }], fault: status('ERROR_STATUS_NOSPC'), ttlMs: 60_000 }));
    expect(auto.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(auto.details).toMatch(
      /^no backend can do error ENOSPC on loop\d+p1 exactly as asked: bpf: .*fails with EIO only.*; dm: .*; blkinject: blkinject unavailable: this kernel .*\. What would work: the blkinject backend, on a kernel with CONFIG_BLK_ERROR_INJECTION \(Linux 7\.2\+; Debian sid 7\.2 ships it off\) and debugfs mounted/,
    );
    const named = await refusalOf(g.client.setFilter({ device: dev, ranges: [{ start: 0, end: 7, ops: ['OP_WRITE'] }], fault: status('ERROR_STATUS_NOSPC'), backend: 'BACKEND_BLKINJECT', ttlMs: 60_000 }));
    expect(named.details).toMatch(/^backend blkinject: blkinject unavailable: this kernel/);
    expect((await g.client.status()).filters).toEqual([]);
    expect(await dio(dev, 'write', 0)).toBe('ok');
  });
});
