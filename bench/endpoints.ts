// Hosts many agent endpoints in one process for the fan-out benchmark: the real agent
// code (service, validation, device resolution, the interceptor, mTLS when asked) over
// an in-memory kernel and a fake sysfs, on 127.0.0.1. Each endpoint is its own listening
// port, so every host the client contacts is its own TCP connection, HTTP/2 session and
// (with TLS) handshake. `portsPerAgent` ports share one agent (one gRPC server bound to
// several ports): 10,000 whole agents would take about 0.6 MB and 10 ms of CPU each to
// start, and the server side is not what this benchmark measures.
// argv[2]: JSON { n, portsPerAgent?, tls?: { cert, key, clientCa }, roles? }.
// Prints the addresses, one per line, then "ready", and serves until killed.
import pino from 'pino';
import { resolveConfig } from '../agent/config';
import { serverCredentials } from '../agent/security';
import { createAgent } from '../agent/server';
import { fakeKernel, fakeSysfs } from '../tests/helpers/fake-kernel';

interface EndpointOptions {
  n: number;
  portsPerAgent?: number;
  tls?: { cert: string; key: string; clientCa: string };
  roles?: Record<string, 'operator' | 'viewer'>;
}

async function main() {
  const o: EndpointOptions = JSON.parse(process.argv[2] ?? '{"n":10}');
  const per = Math.max(1, o.portsPerAgent ?? 1);
  const sysfs = fakeSysfs();
  const log = pino({ level: 'silent' });
  const out: string[] = [];
  for (let i = 0; i < o.n; i += per) {
    const cfg = resolveConfig({ listen: '127.0.0.1:0', attach: 'observe', pinDir: '/sys/fs/bpf/unused', ...(o.tls && { tls: o.tls, roles: o.roles ?? {} }) });
    const a = await createAgent(cfg, log, fakeKernel(), sysfs);
    out.push(a.address);
    const creds = serverCredentials(cfg);
    for (let k = 1; k < per && i + k < o.n; k++) {
      const port = await new Promise<number>((resolve, reject) => a.server.bindAsync('127.0.0.1:0', creds, (err, p) => (err ? reject(err) : resolve(p))));
      out.push(`127.0.0.1:${port}`);
    }
  }
  process.stdout.write(out.join('\n') + '\nready\n');
}
main().catch((e) => {
  process.stderr.write(`endpoints: ${e.stack ?? e}\n`);
  process.exit(1);
});
