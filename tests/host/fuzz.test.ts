// Hostile input against a real agent (observe mode, a loop device): 10,000 malformed
// requests drawn by a seeded generator (the seed is printed; FUZZ_SEED=N repeats a run)
// and sent by 32 concurrent callers. Each must get exactly one answer, the one its case
// calls for (tests/helpers/fuzz-cases.ts: our validation's code, never INTERNAL, for
// every message that decodes; grpc-js's INTERNAL only for bytes that do not); the
// agent's log must show the same answers from its own code; it keeps serving; and the
// pinned maps are byte-for-byte what they were. Needs root and `npm run build`.
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { IoFilterClient } from '../../client';
import type { DeleteFilterRequest } from '../../proto/gen/iofilter/v1/DeleteFilterRequest';
import type { SetFilterRequest } from '../../proto/gen/iofilter/v1/SetFilterRequest';
import { RunningAgent, startAgent } from '../helpers/agent';
import { asExpected, FuzzCase, generators } from '../helpers/fuzz-cases';
import { createLoop, LoopDevice } from '../helpers/loop';
import { fuzzSeed, Rng } from '../helpers/rng';
import { BUILT, describeIf, hostUnavailableReason } from '../helpers/tier';
import { until } from '../helpers/wait';

const d = describeIf(hostUnavailableReason(BUILT.agent));
const REQUESTS = 10_000;
const MAPS = ['index', 'entries', 'ranges', 'nodes', 'counters', 'fstats', 'meta', 'state'];

interface Answer {
  code: string;
  details: string;
}
const answerOf = (e: grpc.ServiceError | null): Answer => (e ? { code: grpc.status[e.code], details: e.details } : { code: 'OK', details: '' });

d('hostile input: 10,000 malformed requests, each answered once as its case says, change nothing', () => {
  let agent: RunningAgent;
  let disk: LoopDevice;
  let client: IoFilterClient;
  let raw: grpc.Client;
  const pinDir = `/sys/fs/bpf/iofilter-fuzz-test-${process.pid}`;
  const fifo = `/dev/iofilter-fuzz-fifo-${process.pid}`;
  const loopA = `/dev/iofilter-fuzz-loop-a-${process.pid}`;
  const loopB = `/dev/iofilter-fuzz-loop-b-${process.pid}`;
  const badDevices: [string, string][] = [
    ...['', '8', '8:', 'a:b', ':', '::', '4294967296:0', '-1:0', '7:-1', '0:0', '1e3:1', ' 7:0', '7:0 ', '7:0\0', '/dev/../etc/passwd', '/etc/passwd',
      '/dev/null', '/dev', fifo, loopA, '../../dev/sda', 'x'.repeat(5000), '\u{1F4A3}:\u{1F4A3}', '%s%s%n', '7:0;rm -rf /'].map((x): [string, string] => [x, 'INVALID_ARGUMENT']),
    ['/dev/iofilter-does-not-exist', 'NOT_FOUND'],
  ];

  beforeAll(async () => {
    disk = createLoop(16);
    agent = await startAgent({ pinDir, attach: 'observe' });
    client = new IoFilterClient(agent.address, { timeoutMs: 60_000 });
    raw = new grpc.Client(agent.address, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': 64 << 20 });
    execFileSync('mkfifo', [fifo]);
    fs.symlinkSync(loopB, loopA);
    fs.symlinkSync(loopA, loopB);
  });
  afterAll(async () => {
    await client?.detach().catch(() => undefined);
    client?.close();
    raw?.close();
    await agent?.stop();
    for (const p of [fifo, loopA, loopB]) fs.rmSync(p, { force: true });
    disk?.detach();
  });

  /** sha256 of each pinned map's whole dump: one changed byte changes its map's hash. */
  const maps = () =>
    Object.fromEntries(MAPS.map((m) => [m, crypto.createHash('sha256').update(execFileSync('bpftool', ['-j', 'map', 'dump', 'pinned', `${pinDir}/${m}`], { maxBuffer: 1 << 30 })).digest('hex')]));

  /**
   * A DeleteFilter of a device that does not exist, whose audit log line names it: once
   * that line is in, so is every line written before it. Resolves where the log goes on.
   */
  const marker = async (minor: number): Promise<number> => {
    expect(await client.deleteFilter(`7:${minor}`)).toMatchObject({ existed: false });
    const needle = `"device":"7:${minor}"`;
    await until(() => agent.logs().includes(needle), `the log line of marker 7:${minor}`);
    return agent.logs().indexOf('\n', agent.logs().indexOf(needle)) + 1;
  };

  function send(c: FuzzCase): Promise<Answer[]> {
    // every answer the call gets, also one that comes after the first: the report reads them at the end
    const got: Answer[] = [];
    return new Promise((resolve) => {
      const done = (a: Answer) => {
        got.push(a);
        resolve(got);
      };
      if (c.bytes)
        raw.makeUnaryRequest(`/iofilter.v1.IoFilterService/${c.method}`, (b: Buffer) => b, (b: Buffer) => b, c.bytes, { deadline: Date.now() + 60_000 }, (e) => done(answerOf(e)));
      else
        (c.method === 'SetFilter' ? client.setFilter(c.typed as SetFilterRequest) : client.deleteFilter(c.typed as DeleteFilterRequest)).then(
          () => done(answerOf(null)),
          (e) => done(answerOf(e)),
        );
    });
  }

  test('each request gets exactly the answer its case calls for; the agent logs the same; maps unchanged; still serving', async () => {
    const seed = fuzzSeed();
    console.log(`fuzz seed ${seed} (FUZZ_SEED=${seed} repeats this run)`);
    const rng = new Rng(seed);
    await client.setFilter({ device: disk.path, ranges: [{ start: 10, end: 20, ops: ['OP_WRITE'] }], ttlMs: 600_000, maxFailures: 5 });
    const before = maps();
    const gens = generators({ device: disk.path, sizeSectors: BigInt(disk.sizeSectors), badDevices, cgroups: !!(await client.status()).features?.cgroups });
    const kinds = Object.keys(gens);
    const logFrom = await marker(1048572);

    const cases: FuzzCase[] = [];
    const answers: Answer[][] = [];
    let next = 0;
    const worker = async () => {
      while (next < REQUESTS) {
        const i = next++;
        cases[i] = gens[rng.pick(kinds)](rng); // drawn synchronously, in request order: one seed, one sequence
        answers[i] = await send(cases[i]);
      }
    };
    const started = Date.now();
    await Promise.all(Array.from({ length: 32 }, worker));
    const tally = new Map<string, number>();
    for (const a of answers.flat()) tally.set(a.code, (tally.get(a.code) ?? 0) + 1);
    console.log(`fuzz: ${REQUESTS} requests in ${Date.now() - started} ms; answers: ${JSON.stringify(Object.fromEntries(tally))}`);

    // per kind: every request sent got one answer, and the one its case calls for
    const report = kinds.map((kind) => {
      const mine = cases.map((c, i) => ({ c, a: answers[i] })).filter((x) => x.c.kind === kind);
      return { kind, sent: mine.length, answeredOnce: mine.filter((x) => x.a.length === 1).length, asExpected: mine.filter((x) => x.a.length === 1 && asExpected(x.c.expected, x.a[0])).length };
    });
    const wrong = cases
      .map((c, i) => ({ c, a: answers[i] }))
      .filter((x) => x.a.length !== 1 || !asExpected(x.c.expected, x.a[0]))
      .slice(0, 10)
      .map((x) => ({ kind: x.c.kind, method: x.c.method, expected: `${x.c.expected.code} ${x.c.expected.details ?? ''}`, got: x.a, bytes: x.c.bytes?.toString('hex').slice(0, 120) }));
    expect({ seed, wrong }).toEqual({ seed, wrong: [] });
    expect(report).toEqual(report.map((r) => ({ ...r, answeredOnce: r.sent, asExpected: r.sent })));
    expect(report.filter((r) => r.sent === 0)).toEqual([]); // every kind was tried
    expect(report.reduce((n, r) => n + r.sent, 0)).toBe(REQUESTS);
    // INTERNAL comes from grpc-js's refusal of undecodable bytes, never from our code
    const internal = (ours: boolean) => cases.filter((c, i) => c.ours === ours && answers[i][0].code === 'INTERNAL').length;
    expect({ ours: internal(true), undecodable: internal(false) }).toEqual({ ours: 0, undecodable: cases.filter((c) => !c.ours).length });

    // the agent's log has one line per request, with the code its own code answered, and no other
    await marker(1048571);
    const logged = new Map<string, number>();
    for (const l of agent.logs().slice(logFrom).split('\n')) {
      if (!l.includes('"msg":"rpc"')) continue;
      const { rpc, code } = JSON.parse(l);
      if (code !== 'OK') logged.set(`${rpc} ${code}`, (logged.get(`${rpc} ${code}`) ?? 0) + 1); // the markers are OK; no fuzz case is
    }
    // (The interceptor never sees grpc-js refuse undecodable bytes: the call just ends, and
    // it logs CANCELLED. Counted as such here, so that nothing else can hide among them.)
    const expectedLog = new Map<string, number>();
    cases.forEach((c, i) => {
      const key = `${c.method} ${c.ours ? answers[i][0].code : 'CANCELLED'}`;
      expectedLog.set(key, (expectedLog.get(key) ?? 0) + 1);
    });
    expect(Object.fromEntries([...logged].sort())).toEqual(Object.fromEntries([...expectedLog].sort()));

    // one request of a million ranges: over the message limit, refused before our code
    const million = await send({ kind: 'million', method: 'SetFilter', ours: false, expected: { code: 'RESOURCE_EXHAUSTED' }, typed: { device: disk.path, ranges: Array.from({ length: 1_000_000 }, () => ({ start: 1, end: 2, ops: ['OP_READ' as const] })) } });
    expect(million.map((a) => a.code)).toEqual(['RESOURCE_EXHAUSTED']);

    expect((await client.status()).filters.map((f) => f.ranges.map((r) => [r.start, r.end]))).toEqual([[['10', '20']]]);
    expect(maps()).toEqual(before);
    expect(agent.proc.exitCode).toBeNull();
  }, 600_000);
});
