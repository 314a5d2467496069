// Agent configuration: the JSON file (--config) merged under command-line flags, with
// defaults that are safe (loopback only, kernel-enforced TTL on every filter).
import * as fs from 'node:fs';
import { DEFAULT_PIN_DIR } from '../native';
import { AttachModeName, MODE_NAMES } from '../proto/names';

export type AttachOnStart = AttachModeName | 'none';
export type Role = 'viewer' | 'operator';

export interface AgentConfig {
  listen: string; // host:port, [v6]:port or unix:/path
  pinDir: string;
  /** Where backends that the kernel does not expire (dm) persist faults and wrapped devices. */
  stateDir: string;
  attach: AttachOnStart;
  /** Attach (in mode `attach`) at the first SetFilter, detach when the last filter is gone. */
  attachOnDemand: boolean;
  maxDisks: number;
  logLevel: string;
  tls?: { cert: string; key: string; clientCa: string };
  insecure: boolean; // allow a non-loopback listener without mTLS (logged loudly)
  roles: Record<string, Role>; // client certificate identity (CN or SAN) -> role
  protect: { allow: string[] }; // devices allowed despite holding / or the agent's files
  ttl: { maxMs: number; defaultMs: number; allowNoTtl: boolean };
  auditLog?: string;
  maxMessageBytes: number;
  /** Prometheus /metrics on this host:port (a bare port: 127.0.0.1). Unset: no metrics listener. */
  metricsListen?: string;
  /** Watch streams: events queued per watcher before its newest are dropped and counted; streams at once. */
  watch: { queueEvents: number; maxWatchers: number };
}

export const DEFAULTS: AgentConfig = {
  listen: '127.0.0.1:50051',
  pinDir: DEFAULT_PIN_DIR,
  stateDir: '/var/lib/iofilter',
  attach: 'auto',
  attachOnDemand: false,
  maxDisks: 1024,
  logLevel: 'info',
  insecure: false,
  roles: {},
  protect: { allow: [] },
  ttl: { maxMs: 3_600_000, defaultMs: 3_600_000, allowNoTtl: false },
  maxMessageBytes: 1 << 20,
  watch: { queueEvents: 1024, maxWatchers: 64 },
};

export class ConfigError extends Error {}

const ATTACH: readonly AttachOnStart[] = [...MODE_NAMES, 'none'];
const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

type Shape = Record<string, (v: unknown, at: string) => unknown>;

const str = (v: unknown, at: string) => {
  if (typeof v !== 'string' || !v) throw new ConfigError(`${at} must be a non-empty string`);
  return v;
};
const bool = (v: unknown, at: string) => {
  if (typeof v !== 'boolean') throw new ConfigError(`${at} must be true or false`);
  return v;
};
const int = (min: number, max: number) => (v: unknown, at: string) => {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw new ConfigError(`${at} must be an integer in ${min}..${max}, got ${JSON.stringify(v)}`);
  return v;
};
const oneOf = (choices: readonly string[]) => (v: unknown, at: string) => {
  if (typeof v !== 'string' || !choices.includes(v)) throw new ConfigError(`${at} must be one of ${choices.join(', ')}, got ${JSON.stringify(v)}`);
  return v;
};
const object = (shape: Shape, required: string[] = []) => (v: unknown, at: string) => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ConfigError(`${at} must be an object`);
  const out: Record<string, unknown> = {};
  for (const [k, val] of Object.entries(v)) {
    if (!(k in shape)) throw new ConfigError(`unknown key ${at ? at + '.' : ''}${k} (known: ${Object.keys(shape).join(', ')})`);
    out[k] = shape[k](val, at ? `${at}.${k}` : k);
  }
  for (const k of required) if (!(k in out)) throw new ConfigError(`${at}.${k} is required`);
  return out;
};

const SCHEMA = object({
  listen: str,
  pinDir: str,
  stateDir: (v, at) => {
    if (typeof v !== 'string' || !v.startsWith('/')) throw new ConfigError(`${at} must be an absolute path`);
    return v;
  },
  attach: oneOf(ATTACH),
  attachOnDemand: bool,
  maxDisks: int(1, 1 << 20),
  logLevel: oneOf(LEVELS),
  tls: object({ cert: str, key: str, clientCa: str }, ['cert', 'key', 'clientCa']),
  insecure: bool,
  roles: (v, at) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ConfigError(`${at} must be an object {identity: role}`);
    for (const [id, role] of Object.entries(v)) oneOf(['viewer', 'operator'])(role, `${at}.${id}`);
    return v;
  },
  protect: object({
    allow: (v, at) => {
      if (!Array.isArray(v)) throw new ConfigError(`${at} must be an array of devices`);
      return v.map((d, i) => str(d, `${at}[${i}]`));
    },
  }),
  ttl: object({ maxMs: int(1, 365 * 86_400_000), defaultMs: int(1, 365 * 86_400_000), allowNoTtl: bool }),
  auditLog: str,
  maxMessageBytes: int(1024, 64 << 20),
  metricsListen: (v, at) => metricsAddress(str(v, at), at),
  watch: object({ queueEvents: int(1, 1 << 20), maxWatchers: int(1, 4096) }),
});

/**
 * The metrics listener address: "9464" means 127.0.0.1:9464; "host:port" and
 * "[v6]:port" as given. Port 0 picks a free one (tests).
 */
export function metricsAddress(v: string, at = 'metricsListen'): string {
  const addr = /^\d+$/.test(v) ? `127.0.0.1:${v}` : v;
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d+)$/.exec(addr);
  if (!m || Number(m[2]) > 65535) throw new ConfigError(`${at} "${v}" must be PORT, host:PORT or [ipv6]:PORT (port 0-65535)`);
  return addr;
}

/** Validates a partial config (file or flags) and merges it over the defaults. */
export function resolveConfig(...layers: Partial<AgentConfig>[]): AgentConfig {
  let cfg: AgentConfig = structuredClone(DEFAULTS);
  for (const layer of layers) {
    const clean = SCHEMA(stripUndefined(layer), '') as Partial<AgentConfig>;
    cfg = {
      ...cfg,
      ...clean,
      ttl: { ...cfg.ttl, ...(clean.ttl ?? {}) },
      protect: { ...cfg.protect, ...(clean.protect ?? {}) },
      watch: { ...cfg.watch, ...(clean.watch ?? {}) },
    };
  }
  if (cfg.attachOnDemand && cfg.attach === 'none')
    throw new ConfigError('attachOnDemand needs a mode to attach in: attach must be auto, fmod_ret, kprobe or observe, not none');
  if (cfg.ttl.defaultMs > cfg.ttl.maxMs)
    throw new ConfigError(`ttl.defaultMs (${cfg.ttl.defaultMs}) exceeds ttl.maxMs (${cfg.ttl.maxMs})`);
  return cfg;
}

export function loadConfigFile(file: string): Partial<AgentConfig> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config ${file}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`config ${file} is not valid JSON: ${(e as Error).message}`);
  }
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
