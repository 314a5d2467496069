#!/usr/bin/env node
// iofilter-agent: the per-host gRPC agent. Flags override the config file; defaults
// are safe (127.0.0.1:50051, kernel-enforced TTL on every filter). SIGTERM/SIGINT stop
// it gracefully and leave pinned filters in force for the next agent to adopt.
import { Command, InvalidArgumentError } from 'commander';
import { AgentConfig, ConfigError, loadConfigFile, resolveConfig } from './config';
import { createLogger } from './log';
import { createAgent } from './server';
import { version } from '../common/version';

const int = (v: string) => {
  if (!/^\d+$/.test(v)) throw new InvalidArgumentError('must be a whole number');
  return Number(v);
};

async function main(): Promise<void> {
  const program = new Command('iofilter-agent')
    .description('Per-host agent for block-device fault injection (eBPF at should_fail_bio)')
    .version(version)
    .option('--config <file>', 'JSON config file (flags override it)')
    .option('--listen <addr>', 'host:port, [v6]:port or unix:/path (default 127.0.0.1:50051)')
    .option('--pin-dir <dir>', 'bpffs directory for the pinned program and maps (default /sys/fs/bpf/iofilter)')
    .option('--state-dir <dir>', 'where dm faults and wrapped devices are persisted (default /var/lib/iofilter)')
    .option('--attach <mode>', 'on start: auto | fmod_ret | kprobe | observe | none (default auto)')
    .option('--attach-on-demand', 'attach (in the --attach mode) at the first SetFilter and detach when the last filter is gone')
    .option('--max-disks <n>', 'disks the filter map can hold (default 1024)', int)
    .option('--log-level <level>', 'fatal | error | warn | info | debug | trace | silent')
    .option('--tls-cert <file>', 'server certificate (PEM)')
    .option('--tls-key <file>', 'server private key (PEM)')
    .option('--tls-client-ca <file>', 'CA that signs client certificates (mTLS)')
    .option('--insecure', 'allow a non-loopback listener without mTLS (logged as a warning)')
    .option('--audit-log <file>', 'append one JSON line per mutating call here')
    .option('--max-ttl <ms>', 'longest TTL a filter may have (default 3600000)', int)
    .option('--allow-no-ttl', 'accept filters without a TTL (default: the default TTL is applied)')
    .option('--metrics-listen <addr>', 'Prometheus /metrics on PORT (127.0.0.1), host:PORT or [v6]:PORT (default: off)')
    .parse();
  const o = program.opts();

  let cfg: AgentConfig;
  try {
    const file = o.config ? loadConfigFile(o.config) : {};
    const tls = o.tlsCert || o.tlsKey || o.tlsClientCa ? { cert: o.tlsCert, key: o.tlsKey, clientCa: o.tlsClientCa } : undefined;
    const ttl = o.maxTtl !== undefined || o.allowNoTtl ? { ...(o.maxTtl !== undefined && { maxMs: o.maxTtl }), ...(o.allowNoTtl && { allowNoTtl: true }) } : undefined;
    const fileTtl = (file as Partial<AgentConfig>).ttl;
    // a lower --max-ttl also lowers the default TTL unless the file sets one
    const defaultMs = o.maxTtl !== undefined && !fileTtl?.defaultMs ? { defaultMs: Math.min(o.maxTtl, 3_600_000) } : {};
    cfg = resolveConfig(file, {
      listen: o.listen,
      pinDir: o.pinDir,
      stateDir: o.stateDir,
      attach: o.attach,
      attachOnDemand: o.attachOnDemand,
      maxDisks: o.maxDisks,
      logLevel: o.logLevel,
      tls: tls as AgentConfig['tls'],
      insecure: o.insecure,
      auditLog: o.auditLog,
      ttl: ttl ? ({ ...defaultMs, ...ttl } as AgentConfig['ttl']) : undefined,
      metricsListen: o.metricsListen,
    });
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`iofilter-agent: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }

  const log = createLogger(cfg.logLevel);
  let agent;
  try {
    agent = await createAgent(cfg, log);
  } catch (e) {
    // the JSON line first, written synchronously (pino's own stream writes from the
    // thread pool and could land after), then the sentence a person reads last
    createLogger(cfg.logLevel, true).fatal({ err: (e as Error).message }, 'cannot start');
    process.stderr.write(`iofilter-agent: ${(e as Error).message}\n`);
    process.exit(e instanceof ConfigError ? 2 : 1);
  }
  let stopping = false;
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.on(sig, () => {
      if (stopping) return;
      stopping = true;
      log.info({ signal: sig }, 'shutting down');
      agent.stop().then(
        () => process.exit(0),
        (e) => {
          log.error({ err: e.message }, 'shutdown failed');
          process.exit(1);
        },
      );
    });
  }
}

void main();
