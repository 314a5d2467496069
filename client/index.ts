// iofilter client library: IoFilterClient for one agent, runFleet for many, and the
// host-list parsing the CLI uses.
export { IoFilterClient, credentials, MAX_TIMEOUT_MS, compactRanges, PACK_FROM } from './client';
export { packRanges, unpackRanges, PackedRangesError, PACKED_VERSION } from '../proto/packed';
export type { ClientOptions, TlsFiles, ViewName } from './client';
export type { AttachModeName } from '../proto/names';
export { runFleet, classify, DEFAULT_CONCURRENCY } from './fleet';
export type { FleetOptions, HostResult, HostError, FailureKind } from './fleet';
export { normalizeHost, DEFAULT_PORT } from './hosts';
export { UsageError } from './errors';
export { parseHosts, parseDuration, parseRange, checkDevice } from './args';
export { loadPlan, parsePlan, schedule, PlanError } from './plan';
export type { ExperimentPlan, HealthCheck, Schedule, ScheduledStep } from './plan';
export { ExperimentRun, EXIT_ABORTED, EXIT_LEFT_BEHIND } from './run';
export type { RunEvent, RunOptions, RunSummary } from './run';
export { watchFleet } from './watch';
export type { WatchFleetOptions, WatchTally } from './watch';
export type { WatchRequest } from '../proto/gen/iofilter/v1/WatchRequest';
export type { IoEvent__Output as IoEvent } from '../proto/gen/iofilter/v1/IoEvent';
export type { SetFilterRequest } from '../proto/gen/iofilter/v1/SetFilterRequest';
export type { Filter__Output as Filter } from '../proto/gen/iofilter/v1/Filter';
export type { StatusResponse__Output as StatusResponse } from '../proto/gen/iofilter/v1/StatusResponse';
export type { AttachState__Output as AttachState } from '../proto/gen/iofilter/v1/AttachState';
