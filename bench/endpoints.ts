// Hosts many agent endpoints in one process for the fan-out benchmark: the real agent
// code (service, validation, device resolution) over an in-memory kernel and a fake
// sysfs, one gRPC server per endpoint on 127.0.0.1. Prints the addresses, one per line,
// then "ready", and serves until killed.
import pino from 'pino';
import { resolveConfig } from '../agent/config';
import { createAgent } from '../agent/server';
import { fakeKernel, fakeSysfs } from '../tests/helpers/fake-kernel';

async function main() {
  const n = Number(process.argv[2] ?? 10);
  const sysfs = fakeSysfs();
  const log = pino({ level: 'silent' });
  for (let i = 0; i < n; i++) {
    const cfg = resolveConfig({ listen: '127.0.0.1:0', attach: 'observe', pinDir: '/sys/fs/bpf/unused' });
    const a = await createAgent(cfg, log, fakeKernel(), sysfs);
    process.stdout.write(a.address + '\n');
  }
  process.stdout.write('ready\n');
}
void main();
