// The project's fragment built the way distributions build (IOFILTER_KERNEL=distro-6.1|
// distro-6.12|distro-7.2, tests/vm/build-distro-kernel: -O2, FAIL_MAKE_REQUEST off, error
// injection and kprobe override on, each with its Debian suite's gcc): whether the BPF
// hook survives the compiler. Three witnesses must agree: the build's disassembly (does
// submit_bio_noacct call should_fail_bio?), the booted kernel (symbols, BTF), and the
// agent (auto's self-test, then real EIO or the refusal that says the hook never fired).
// Observe counts exactly on every one. Cases are recorded in the kernel matrix.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { ROOT } from '../helpers/common';
import { Guest, KERNEL } from '../helpers/guest';
import { matrixCase, matrixRefused, setRelease, writeMatrix } from '../helpers/matrix';
import { describeIf } from '../helpers/tier';
import { vmUnavailableReason } from '../helpers/vm';

const run = promisify(execFile);

interface DistroBuild {
  /** the suite's compiler, as `gcc --version` names it */
  compiler: RegExp;
  /** calls to should_fail_bio in submit_bio_noacct and its compiler-made pieces */
  calls: number;
  /** should_fail_bio and its clones in /proc/kallsyms */
  symbols: string[];
  /** lines of `bpftool btf dump` of vmlinux that name should_fail_bio */
  btf: number;
  /** does an enforcing hook fire (the agent's self-test at attach) */
  fires: boolean;
}

/** Measured on these builds (README "Kernel matrix"); the three witnesses are checked against it. */
const DISTRO: Record<string, DistroBuild> = {
  'distro-6.1': { compiler: /gcc \(Debian 12\./, calls: 1, symbols: ['should_fail_bio'], btf: 1, fires: true },
  'distro-6.12': { compiler: /gcc \(Debian 14\./, calls: 0, symbols: ['should_fail_bio'], btf: 1, fires: false },
  'distro-7.2': { compiler: /gcc \(Debian 16\./, calls: 0, symbols: ['should_fail_bio'], btf: 1, fires: false },
};
const D = DISTRO[KERNEL];
const d = describeIf(D ? vmUnavailableReason() : `IOFILTER_KERNEL=${KERNEL} is not a distro-like build (${Object.keys(DISTRO).join(', ')})`);

d(`VM distro-like build ${KERNEL}: does the hook survive the compiler`, () => {
  let g: Guest;
  let facts = '';

  beforeAll(async () => {
    // the cached build (scripts/test builds it before jest starts); its facts sit beside it
    const { stdout } = await run(path.join(ROOT, 'tests/vm/build-distro-kernel'), { env: { ...process.env, IOFILTER_KERNEL: KERNEL }, maxBuffer: 1 << 24 });
    facts = fs.readFileSync(path.join(path.dirname(stdout.trim().split('\n').pop()!), 'facts.txt'), 'utf8');
    g = await Guest.boot(['--attach', 'auto']);
    setRelease((await g.client.status()).kernelRelease);
  }, 900_000);

  afterAll(async () => {
    writeMatrix(KERNEL, 'distro');
    await g?.shutdown();
  }, 60_000);

  test('the build: the suite compiler, -O2, FAIL_MAKE_REQUEST off, error injection on; its calls to should_fail_bio', () => {
    const fact = (k: string) => new RegExp(`^${k}: (.*)$`, 'm').exec(facts)?.[1];
    expect(fact('compiler')).toMatch(D.compiler);
    expect(fact('config')).toBe('CONFIG_CC_OPTIMIZE_FOR_PERFORMANCE=y FAIL_MAKE_REQUEST=n FUNCTION_ERROR_INJECTION=y');
    expect(Number(fact('called from submit_bio_noacct'))).toBe(D.calls);
  });

  test('the booted kernel: should_fail_bio in its symbols and BTF', async () => {
    expect(await g.hookSymbols()).toEqual(D.symbols);
    expect(await g.hookBtfLines()).toBe(D.btf);
  });

  if (D?.fires) {
    test('auto: fmod_ret attached with its self-test passed; real EIO on a disk, none once deleted', matrixCase(KERNEL, 'fmod_ret', 'real EIO (distro build)', async () => {
      const st = await g.client.status();
      expect(st.state).toMatchObject({ attached: true, mode: 'MODE_FMOD_RET', hook: 'fmod_ret/should_fail_bio' });
      expect(st.state?.selfTest).toMatchObject({ passed: true, detail: expect.stringMatching(/error EIO, counted 1 matched, 1 failed/) });
      console.log(`${KERNEL}: auto at start: ${st.state?.mode} at ${st.state?.hook}, self-test: ${st.state?.selfTest?.detail}`);
      await g.client.setFilter({ device: g.disk, wholeDeviceOps: ['OP_WRITE'] });
      expect([await g.io(g.disk, 'write', 0), await g.io(g.disk, 'read', 0)]).toEqual(['EIO', 'ok']);
      await g.client.deleteFilter(g.disk);
      expect(await g.io(g.disk, 'write', 0)).toBe('ok');
    }));
  } else {
    test('auto: nothing attached, because the self-test saw the hook never fire; fmod_ret and kprobe refused with that reason', async () => {
      const st = await g.client.status();
      expect(st.state?.attached).toBe(false);
      expect(st.attachError).toMatch(/hook attached but did not fire/);
      console.log(`${KERNEL}: auto at start: ${st.attachError}`);
      for (const mode of ['fmod_ret', 'kprobe'] as const) {
        const err = await g.client.attach(mode).then(
          () => null,
          (e: { code: number; details: string }) => e,
        );
        expect({ code: err && grpc.status[err.code], details: err?.details }).toEqual({ code: 'FAILED_PRECONDITION', details: expect.stringMatching(/hook attached but did not fire/) });
        matrixRefused(KERNEL, mode, 'all cases', err!.details);
      }
      expect((await g.client.status()).state?.attached).toBe(false);
    });
  }

  test('observe: attached with its self-test passed, ranges counted exactly, nothing fails', matrixCase(KERNEL, 'observe', 'ranges counted', async () => {
    await g.attach('observe');
    const st = await g.client.status();
    console.log(`${KERNEL}: observe at ${st.state?.hook}, self-test: ${st.state?.selfTest?.detail}`);
    expect(st.state?.selfTest).toMatchObject({ passed: true, detail: expect.stringMatching(/counted 1 matched, 1 would fail/) });
    await g.client.setFilter({ device: g.disk, ranges: [{ start: 1000, end: 1999, ops: ['OP_WRITE'] }] });
    const seen = [
      await g.io(g.disk, 'write', 1200), // inside
      await g.io(g.disk, 'write', 996), // over the start
      await g.io(g.disk, 'write', 1996), // over the end
      await g.io(g.disk, 'write', 2000), // next to it
      await g.io(g.disk, 'read', 1200), // another op
    ];
    expect(seen).toEqual(Array(5).fill('ok'));
    expect((await g.filterOf(g.disk))?.ranges.map((r) => [r.matched, r.failed])).toEqual([['3', '3']]);
    await g.client.deleteFilter(g.disk);
  }));

  test('the kernel stayed healthy', async () => {
    expect(await g.oopses()).toBe('');
  });
});
