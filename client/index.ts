// iofilter client library: IoFilterClient for one agent, runFleet for many, and the
// host-list parsing the CLI uses.
export { IoFilterClient, credentials, MAX_TIMEOUT_MS } from './client';
export type { ClientOptions, TlsFiles } from './client';
export type { AttachModeName } from '../proto/names';
export { runFleet, classify } from './fleet';
export type { FleetOptions, HostResult, HostError, FailureKind } from './fleet';
export { watchFleet } from './watch';
export type { WatchFleetOptions, WatchTally } from './watch';
export type { WatchRequest } from '../proto/gen/iofilter/v1/WatchRequest';
export type { IoEvent__Output as IoEvent } from '../proto/gen/iofilter/v1/IoEvent';
export { parseHosts, normalizeHost, parseDuration, parseRange, checkDevice, UsageError, DEFAULT_PORT } from './args';
export type { SetFilterRequest } from '../proto/gen/iofilter/v1/SetFilterRequest';
export type { Filter__Output as Filter } from '../proto/gen/iofilter/v1/Filter';
export type { StatusResponse__Output as StatusResponse } from '../proto/gen/iofilter/v1/StatusResponse';
export type { AttachState__Output as AttachState } from '../proto/gen/iofilter/v1/AttachState';
