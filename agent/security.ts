// Who may call what: mTLS credentials, client identity (certificate CN or SAN) and
// roles, the listen-address rule, and the audit trail of every mutating call.
import * as fs from 'node:fs';
import * as net from 'node:net';
import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { AgentConfig, Role } from './config';
import { ConfigError } from './config';

/** Methods a viewer may call; everything else needs an operator. */
const VIEWER_METHODS = new Set(['Status', 'Watch']);
/** Methods that change state and so are audited. */
export const MUTATIONS = new Set(['Attach', 'Detach', 'SetFilter', 'DeleteFilter', 'ClearFilters', 'Wrap', 'Unwrap']);

export function isLoopback(listen: string): boolean {
  if (listen.startsWith('unix:')) return true;
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(listen);
  if (!m) throw new ConfigError(`listen "${listen}" must be host:port, [ipv6]:port or unix:/path`);
  const host = m[1];
  if (host === 'localhost') return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  if (net.isIPv6(host)) return host === '::1';
  return false; // a name could resolve anywhere
}

/** Refuses a listener anyone on the network could reach without mTLS, unless told to. */
export function checkListen(cfg: AgentConfig): string | null {
  if (isLoopback(cfg.listen) || cfg.tls) return null;
  if (!cfg.insecure)
    throw new ConfigError(
      `refusing to listen on ${cfg.listen} without mTLS: anyone who can reach it could fail this host's disks. ` +
        `Give tls.cert, tls.key and tls.clientCa (flags --tls-cert, --tls-key, --tls-client-ca), listen on 127.0.0.1 or unix:/path, ` +
        `or pass --insecure to accept the risk`,
    );
  return `INSECURE: listening on ${cfg.listen} without TLS or authentication; anyone who can reach it can fail this host's disks`;
}

export function serverCredentials(cfg: AgentConfig): grpc.ServerCredentials {
  if (!cfg.tls) return grpc.ServerCredentials.createInsecure();
  const read = (f: string, what: string) => {
    try {
      return fs.readFileSync(f);
    } catch (e) {
      throw new ConfigError(`cannot read ${what} ${f}: ${(e as Error).message}`);
    }
  };
  const creds = grpc.ServerCredentials.createSsl(
    read(cfg.tls.clientCa, 'tls.clientCa'),
    [{ cert_chain: read(cfg.tls.cert, 'tls.cert'), private_key: read(cfg.tls.key, 'tls.key') }],
    true,
  );
  // Ask for the client certificate but verify it here, so that a missing or foreign
  // certificate gets a gRPC UNAUTHENTICATED the client can read instead of a bare
  // TLS handshake failure.
  // (grpc-js keeps the tls.createServer options in serverConstructorOptions.)
  const opts = (creds as unknown as { serverConstructorOptions?: Record<string, unknown> }).serverConstructorOptions;
  if (!opts || opts.requestCert !== true) throw new Error('@grpc/grpc-js internals changed: cannot request client certificates');
  opts.rejectUnauthorized = false;
  return creds;
}

export interface Caller {
  peer: string;
  identity: string; // certificate identity, or "local" on a loopback/unix listener
  role: Role | null;
  error?: { code: grpc.status; details: string };
}

export class Authenticator {
  constructor(private readonly cfg: AgentConfig) {}

  identify(call: grpc.ServerInterceptingCallInterface): Caller {
    const peer = call.getPeer();
    if (!this.cfg.tls) return { peer, identity: 'local', role: 'operator' };
    // grpc-js shows the certificate only once TLS has verified it against the client
    // CA (chain and dates), so "none" covers both a missing and a foreign certificate
    const pc = call.getAuthContext()?.sslPeerCertificate;
    if (!pc?.raw)
      return {
        peer,
        identity: '',
        role: null,
        error: { code: grpc.status.UNAUTHENTICATED, details: "no verified client certificate: present one signed by this agent's client CA (mTLS)" },
      };
    const ids = identities(new X509Certificate(pc.raw));
    const roles = ids.map((id) => this.cfg.roles[id]).filter(Boolean);
    const role: Role | null = roles.includes('operator') ? 'operator' : roles.includes('viewer') ? 'viewer' : null;
    const identity = ids.find((id) => this.cfg.roles[id]) ?? ids[0] ?? '';
    return { peer, identity, role };
  }

  /** null if allowed, else the status to answer with. */
  authorize(c: Caller, method: string): { code: grpc.status; details: string } | null {
    if (c.error) return c.error;
    if (!MUTATIONS.has(method) && !VIEWER_METHODS.has(method)) return null; // health, reflection
    if (!c.role) return { code: grpc.status.PERMISSION_DENIED, details: `identity "${c.identity}" has no role on this agent` };
    if (c.role === 'viewer' && !VIEWER_METHODS.has(method))
      return { code: grpc.status.PERMISSION_DENIED, details: `identity "${c.identity}" is a viewer; ${method} needs operator` };
    return null;
  }
}

/** CN first, then SAN entries (DNS names, URIs, emails) as plain strings. */
function identities(cert: X509Certificate): string[] {
  const out: string[] = [];
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(cert.subject)?.[1];
  if (cn) out.push(cn);
  for (const part of (cert.subjectAltName ?? '').split(/,\s*/)) {
    const i = part.indexOf(':');
    if (i > 0) out.push(part.slice(i + 1));
  }
  return out;
}

/** One JSON line per mutating call - accepted or refused - to the audit file. */
export class AuditLog {
  private fd: number | null = null;
  constructor(file?: string) {
    if (file) this.fd = fs.openSync(file, 'a', 0o600);
  }
  write(entry: Record<string, unknown>): void {
    if (this.fd !== null) fs.writeSync(this.fd, JSON.stringify({ time: new Date().toISOString(), ...entry }) + '\n');
  }
  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}
