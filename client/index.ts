// iofilter client library: IoFilterClient for one agent, runFleet for many.
export { IoFilterClient, credentials } from './client';
export type { ClientOptions, TlsFiles, AttachModeName } from './client';
export { runFleet, classify } from './fleet';
export type { FleetOptions, HostResult, Outcome } from './fleet';
export { parseHosts, normalizeHost, parseDuration, UsageError, DEFAULT_PORT } from './args';
