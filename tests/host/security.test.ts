// Safety and security against a real agent: mTLS with roles, the listen rule,
// protected devices and the audit trail. (Hostile input: fuzz.test.ts.)
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { IoFilterClient } from '../../client';
import { AGENT_MAIN, RunningAgent, startAgent } from '../helpers/agent';
import { createLoop, LoopDevice } from '../helpers/loop';
import { BUILT, describeIf, hostUnavailableReason } from '../helpers/tier';
import { until } from '../helpers/wait';
import { freePort } from '../helpers/common';

const d = describeIf(hostUnavailableReason(BUILT.agent));

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-sec-'));
const f = (name: string) => path.join(tmp, name);

function openssl(...args: string[]) {
  execFileSync('openssl', args, { stdio: 'pipe' });
}
/** A CA, and certificates it signs: server for 127.0.0.1, and clients by CN. */
function makeCa(name: string) {
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-keyout', f(`${name}.key`), '-out', f(`${name}.crt`));
}
function makeCert(ca: string, cn: string, server = false) {
  const ext = f(`${cn}-${ca}.ext`);
  fs.writeFileSync(ext, server ? 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' : `subjectAltName=DNS:${cn}.clients.example\nextendedKeyUsage=clientAuth\n`);
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${cn}`, '-keyout', f(`${cn}-${ca}.key`), '-out', f(`${cn}-${ca}.csr`));
  openssl('x509', '-req', '-in', f(`${cn}-${ca}.csr`), '-CA', f(`${ca}.crt`), '-CAkey', f(`${ca}.key`), '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', f(`${cn}-${ca}.crt`));
}
const tlsOf = (cn: string, ca = 'ca') => ({ ca: f('ca.crt'), cert: f(`${cn}-${ca}.crt`), key: f(`${cn}-${ca}.key`) });
const codeOf = async (p: Promise<unknown>) => p.then(() => 'OK', (e) => grpc.status[e.code] as string);

d('mTLS, roles and the audit trail', () => {
  let agent: RunningAgent;
  let disk: LoopDevice;
  const auditLog = f('audit.jsonl');
  const pinDir = `/sys/fs/bpf/iofilter-sec-test-${process.pid}`;
  let mutations = 0; // mutating calls this test makes, accepted or not

  beforeAll(async () => {
    makeCa('ca');
    makeCa('otherca');
    makeCert('ca', 'agent', true);
    for (const cn of ['alice', 'bob', 'mallory']) makeCert('ca', cn);
    makeCert('otherca', 'alice');
    fs.writeFileSync(f('agent.json'), JSON.stringify({
      tls: { cert: f('agent-ca.crt'), key: f('agent-ca.key'), clientCa: f('ca.crt') },
      roles: { alice: 'operator', 'bob.clients.example': 'viewer' },
      auditLog,
    }));
    disk = createLoop(16);
    const port = await freePort();
    agent = await startAgent({ pinDir, listen: `127.0.0.1:${port}`, args: ['--config', f('agent.json')], waitReady: false });
    const c = new IoFilterClient(agent.address, { tls: tlsOf('alice'), timeoutMs: 2000 });
    await until(() => c.status().then(() => true, () => false), `the TLS agent to answer\n${agent.logs()}`);
    c.close();
  });
  afterAll(async () => {
    const c = new IoFilterClient(agent.address, { tls: tlsOf('alice') });
    await c.detach().catch(() => undefined);
    c.close();
    await agent?.stop();
    disk?.detach();
  });

  test('an operator certificate (CN) may set, delete and read', async () => {
    const c = new IoFilterClient(agent.address, { tls: tlsOf('alice') });
    expect(await codeOf(c.setFilter({ device: disk.path, wholeDeviceOps: ['OP_WRITE'] }))).toBe('OK');
    expect(await codeOf(c.deleteFilter(disk.path))).toBe('OK');
    mutations += 2;
    expect(await codeOf(c.status())).toBe('OK');
    c.close();
  });

  test('a viewer certificate (matched by SAN) may read but not set', async () => {
    const c = new IoFilterClient(agent.address, { tls: tlsOf('bob') });
    expect(await codeOf(c.status())).toBe('OK');
    const err = await c.setFilter({ device: disk.path, wholeDeviceOps: ['OP_WRITE'] }).catch((e) => e);
    mutations++;
    expect(grpc.status[err.code]).toBe('PERMISSION_DENIED');
    expect(err.details).toMatch(/viewer; SetFilter needs operator/);
    expect(await codeOf(c.detach())).toBe('PERMISSION_DENIED');
    mutations++;
    const clear = await c.clearFilters().catch((e) => e);
    mutations++;
    expect(grpc.status[clear.code]).toBe('PERMISSION_DENIED');
    expect(clear.details).toMatch(/viewer; ClearFilters needs operator/);
    c.close();
  });

  test('an unknown identity is denied; a certificate from another CA and no certificate are unauthenticated', async () => {
    const unknown = new IoFilterClient(agent.address, { tls: tlsOf('mallory') });
    expect(await codeOf(unknown.status())).toBe('PERMISSION_DENIED');
    expect(await codeOf(unknown.setFilter({ device: disk.path, wholeDeviceOps: ['OP_WRITE'] }))).toBe('PERMISSION_DENIED');
    mutations++;
    unknown.close();

    const foreign = new IoFilterClient(agent.address, { tls: { ...tlsOf('alice', 'otherca'), ca: f('ca.crt') } });
    const e1 = await foreign.setFilter({ device: disk.path, wholeDeviceOps: ['OP_WRITE'] }).catch((e) => e);
    mutations++;
    expect(grpc.status[e1.code]).toBe('UNAUTHENTICATED');
    expect(e1.details).toMatch(/no verified client certificate/);
    foreign.close();

    const noCert = new IoFilterClient(agent.address, {}, grpc.credentials.createSsl(fs.readFileSync(f('ca.crt'))));
    const e2 = await noCert.attach('observe').catch((e) => e);
    mutations++;
    expect(grpc.status[e2.code]).toBe('UNAUTHENTICATED');
    expect(e2.details).toMatch(/no verified client certificate/);
    noCert.close();

    const plain = new IoFilterClient(agent.address, { timeoutMs: 2000 });
    expect(await codeOf(plain.status())).toBe('UNAVAILABLE'); // no TLS at all: no connection
    plain.close();
  });

  test('the audit file holds one line per mutating call, accepted or denied, with who and what', async () => {
    const lines = fs.readFileSync(auditLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(mutations);
    expect(lines.map((l) => [l.rpc, l.identity, l.code])).toEqual([
      ['SetFilter', 'alice', 'OK'],
      ['DeleteFilter', 'alice', 'OK'],
      ['SetFilter', 'bob.clients.example', 'PERMISSION_DENIED'],
      ['Detach', 'bob.clients.example', 'PERMISSION_DENIED'],
      ['ClearFilters', 'bob.clients.example', 'PERMISSION_DENIED'],
      ['SetFilter', 'mallory', 'PERMISSION_DENIED'],
      ['SetFilter', '', 'UNAUTHENTICATED'],
      ['Attach', '', 'UNAUTHENTICATED'],
    ]);
    for (const l of lines) {
      expect(l.time).toMatch(/^\d{4}-\d\d-\d\dT/);
      expect(l.peer).toMatch(/127\.0\.0\.1:\d+/);
      expect(l.request).toBeDefined();
    }
    expect(lines[0].request).toMatchObject({ device: disk.path, wholeDeviceOps: ['OP_WRITE'] });
    expect(fs.statSync(auditLog).mode & 0o777).toBe(0o600);
  });
});

d('the listen rule', () => {
  const run = (...args: string[]) =>
    spawnSync(process.execPath, [AGENT_MAIN, '--pin-dir', `/sys/fs/bpf/iofilter-listen-test-${process.pid}`, '--attach', 'none', ...args], { encoding: 'utf8', timeout: 20_000 });
  test('refuses 0.0.0.0 without mTLS, saying what to do', () => {
    const r = run('--listen', '0.0.0.0:0');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/refusing to listen on 0\.0\.0\.0:0 without mTLS.*--tls-cert.*--insecure/s);
  });
  test('--insecure starts anyway, with a warning in the log', async () => {
    const a = await startAgent({ pinDir: `/sys/fs/bpf/iofilter-listen-test-${process.pid}`, attach: 'none', listen: `0.0.0.0:${await freePort()}`, args: ['--insecure'], waitReady: false });
    await until(() => /serving/.test(a.logs()), 'the agent to log that it is serving');
    expect(a.logs()).toMatch(/"level":40.*INSECURE: listening on 0\.0\.0\.0/);
    await a.stop();
  });
  test('a unix socket is created mode 0600', async () => {
    const sock = f('agent.sock');
    const a = await startAgent({ pinDir: `/sys/fs/bpf/iofilter-listen-test-${process.pid}`, attach: 'none', listen: `unix:${sock}` });
    expect(fs.statSync(sock).mode & 0o777).toBe(0o600);
    await a.stop();
  });
  test('a config file with an unknown key or a bad value is refused', () => {
    fs.writeFileSync(f('bad.json'), JSON.stringify({ ttl: { maxMs: 1000, defaultMinutes: 5 } }));
    expect(run('--config', f('bad.json')).stderr).toMatch(/unknown key ttl\.defaultMinutes/);
    fs.writeFileSync(f('bad2.json'), JSON.stringify({ roles: { alice: 'admin' } }));
    expect(run('--config', f('bad2.json')).stderr).toMatch(/roles\.alice must be one of viewer, operator/);
  });
});

d('protected devices', () => {
  let agent: RunningAgent;
  let client: IoFilterClient;
  const rootDev = (() => {
    const line = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === '/');
    return line?.split(' ')[2] ?? '0:0';
  })();
  const rootReason = !rootDev.startsWith('0:') && fs.existsSync(`/sys/dev/block/${rootDev}`) ? null : `/ is not on a block device here (${rootDev}): nothing holds / to protect`;

  beforeAll(async () => {
    agent = await startAgent({ pinDir: `/sys/fs/bpf/iofilter-protect-test-${process.pid}`, attach: 'observe' });
    client = new IoFilterClient(agent.address);
  });
  afterAll(async () => {
    await client.detach().catch(() => undefined);
    client.close();
    await agent.stop();
  });

  describeIf(rootReason)('the device holding /', () => {
    test(`the device holding / (${rootDev}) is refused, naming the mount`, async () => {
      const err = await client.setFilter({ device: rootDev, wholeDeviceOps: ['OP_READ'] }).catch((e) => e);
      expect(grpc.status[err.code]).toBe('FAILED_PRECONDITION');
      expect(err.details).toMatch(new RegExp(`${rootDev}.*is protected.*holds / \\(\\w+ on \\S+ at /\\).*protect\\.allow`));
      const e2 = await client.setFilter({ device: rootDev, ranges: [{ start: 0, end: 7, ops: ['OP_WRITE'] }] }).catch((e) => e);
      expect(grpc.status[e2.code]).toBe('FAILED_PRECONDITION');
      // a cgroup scope does not make it allowed
      const e3 = await client.setFilter({ device: rootDev, wholeDeviceOps: ['OP_WRITE'], cgroupPath: '/' }).catch((e) => e);
      expect(grpc.status[e3.code]).toBe('FAILED_PRECONDITION');
      expect(e3.details).toMatch(/is protected/);
      expect((await client.status()).filters).toHaveLength(0);
    });

    test('protect.allow in the config lets it through (observe mode: counts only)', async () => {
      const cfg = f('allow.json');
      fs.writeFileSync(cfg, JSON.stringify({ protect: { allow: [rootDev] } }));
      const a = await startAgent({ pinDir: `/sys/fs/bpf/iofilter-allow-test-${process.pid}`, attach: 'observe', args: ['--config', cfg] });
      const c = new IoFilterClient(a.address);
      expect(await codeOf(c.setFilter({ device: rootDev, ranges: [{ start: 0, end: 0, ops: ['OP_DISCARD'] }], ttlMs: 1000 }))).toBe('OK');
      await c.detach();
      c.close();
      await a.stop();
    });
  });

  test('a device holding the agent\'s own files (its audit log) is refused, on any machine', async () => {
    // the same rule as for /, without depending on what / is here: an ext4 on a loop device holds the audit log
    const l = createLoop(16);
    const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-protect-'));
    let a: RunningAgent | undefined;
    try {
      execFileSync('mkfs.ext4', ['-q', '-F', l.path]);
      execFileSync('mount', [l.path, mnt]);
      a = await startAgent({ pinDir: `/sys/fs/bpf/iofilter-ownfiles-test-${process.pid}`, attach: 'observe', args: ['--audit-log', path.join(mnt, 'audit.jsonl')] });
      const c = new IoFilterClient(a.address);
      const err = await c.setFilter({ device: l.path, wholeDeviceOps: ['OP_WRITE'] }).catch((e) => e);
      expect(grpc.status[err.code]).toBe('FAILED_PRECONDITION');
      expect(err.details).toMatch(new RegExp(`is protected.*holds the agent's files \\(${path.join(mnt, 'audit.jsonl')}\\)`));
      expect((await c.status()).filters).toHaveLength(0);
      await c.detach();
      c.close();
    } finally {
      await a?.stop();
      spawnSync('umount', [mnt]);
      fs.rmSync(mnt, { recursive: true, force: true });
      l.detach();
    }
  });

  test('protection follows the host as it is now: swap turned on after the agent started is refused, and free again once off', async () => {
    const l = createLoop(16);
    let on = false;
    try {
      expect(await codeOf(client.setFilter({ device: l.path, wholeDeviceOps: ['OP_WRITE'], ttlMs: 60_000 }))).toBe('OK');
      await client.deleteFilter(l.path);
      execFileSync('mkswap', ['-q', l.path]);
      execFileSync('swapon', [l.path]);
      on = true;
      const err = await client.setFilter({ device: l.path, wholeDeviceOps: ['OP_WRITE'] }).catch((e) => e);
      expect(grpc.status[err.code]).toBe('FAILED_PRECONDITION');
      expect(err.details).toMatch(/is protected.*is active swap/);
      expect((await client.status()).filters).toHaveLength(0);
      execFileSync('swapoff', [l.path]);
      on = false;
      expect(await codeOf(client.setFilter({ device: l.path, wholeDeviceOps: ['OP_WRITE'], ttlMs: 60_000 }))).toBe('OK');
      await client.deleteFilter(l.path);
    } finally {
      if (on) spawnSync('swapoff', [l.path]);
      l.detach();
    }
  });

  test('a loop device backed by a file is not protected', async () => {
    const l = createLoop(8);
    try {
      expect(await codeOf(client.setFilter({ device: l.path, wholeDeviceOps: ['OP_WRITE'] }))).toBe('OK');
      await client.deleteFilter(l.path);
    } finally {
      l.detach(); // also when it failed: no loop device left behind
    }
  });
});
