// Agent addresses as the client library and the CLI take them: `host` (default port),
// `host:port`, `[v6]:port`, a bare IPv6 address, or `unix:/path`.
import * as net from 'node:net';
import { UsageError } from './errors';

export const DEFAULT_PORT = 50051;

/** "db1" -> "db1:50051"; "db1:7000", "[::1]:7000", "::1", "unix:/run/x.sock" as given. */
export function normalizeHost(raw: string): string {
  const h = raw.trim();
  if (!h) throw new UsageError('empty host');
  if (h.startsWith('unix:')) {
    if (h.length <= 5) throw new UsageError(`host "${raw}": unix: needs a socket path`);
    return h;
  }
  let host: string;
  let port: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(h);
  if (v6) {
    [host, port] = [v6[1], v6[2]];
    if (!net.isIPv6(host)) throw new UsageError(`host "${raw}": ${host} is not an IPv6 address`);
    return `[${host}]:${checkPort(port, raw)}`;
  }
  if (net.isIPv6(h)) return `[${h}]:${DEFAULT_PORT}`;
  const i = h.lastIndexOf(':');
  [host, port] = i >= 0 ? [h.slice(0, i), h.slice(i + 1)] : [h, undefined];
  // underscores are not legal in DNS names but common in internal ones (and /etc/hosts)
  if (!/^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$/.test(host)) throw new UsageError(`host "${raw}": "${host}" is not a host name or address`);
  return `${host}:${checkPort(port, raw)}`;
}

function checkPort(port: string | undefined, raw: string): number {
  if (port === undefined) return DEFAULT_PORT;
  const n = Number(port);
  if (!/^\d+$/.test(port) || n < 1 || n > 65535) throw new UsageError(`host "${raw}": port must be 1-65535`);
  return n;
}
