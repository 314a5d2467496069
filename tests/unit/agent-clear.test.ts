// ClearFilters (`iofilterctl halt`) over real gRPC against an in-process agent (fake
// kernel, fake sysfs): every filter gone in one call, idempotent, audited as a
// mutation, and a no-op on an agent that is not attached.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { resolveConfig } from '../../agent/config';
import { Agent, createAgent } from '../../agent/server';
import { IoFilterClient } from '../../client';
import { fakeKernel, fakeSysfs } from '../helpers/fake-kernel';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-clear-'));
const auditLog = path.join(dir, 'audit.jsonl');
const kernel = fakeKernel();
const agents: Agent[] = [];
const clients: IoFilterClient[] = [];

async function start(attach: 'observe' | 'none', audit?: string): Promise<IoFilterClient> {
  const cfg = resolveConfig({ listen: '127.0.0.1:0', attach, pinDir: '/sys/fs/bpf/unused', ...(audit ? { auditLog: audit } : {}) });
  const agent = await createAgent(cfg, pino({ level: 'silent' }), kernel, fakeSysfs());
  agents.push(agent);
  const c = new IoFilterClient(agent.address, { timeoutMs: 5000 });
  clients.push(c);
  return c;
}

afterAll(async () => {
  for (const c of clients) c.close();
  for (const a of agents) await a.stop(1000);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('every filter (disk and partition) is gone in one call; a second call removes nothing; both audited', async () => {
  const client = await start('observe', auditLog);
  await client.setFilter({ device: '7:0', ranges: [{ start: 0, end: 9, ops: ['OP_WRITE'] }], ttlMs: 60_000 });
  await client.setFilter({ device: '7:1', wholeDeviceOps: ['OP_READ'], ttlMs: 60_000 });
  expect((await client.status()).filters).toHaveLength(2);

  expect(await client.clearFilters()).toEqual({ removed: 2 });
  expect((await client.status()).filters).toEqual([]);
  expect(kernel.filterer!.filters).toHaveLength(0);
  expect(await client.clearFilters()).toEqual({ removed: 0 });

  const audit = fs.readFileSync(auditLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  expect(audit.map((e) => [e.rpc, e.result])).toEqual([
    ['SetFilter', 'ok'],
    ['SetFilter', 'ok'],
    ['ClearFilters', 'ok'],
    ['ClearFilters', 'ok'],
  ]);
  expect(audit[2]).toMatchObject({ identity: 'local', code: 'OK' });
});

test('an agent that is not attached has nothing in force: removed 0, not an error', async () => {
  const client = await start('none');
  expect((await client.status()).state?.attached).toBe(false);
  expect(await client.clearFilters()).toEqual({ removed: 0 });
});
