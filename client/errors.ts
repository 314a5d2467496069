// The error for bad input from the caller (a malformed host, device, flag or value),
// raised before any network call; the CLI reports it and exits 1.
export class UsageError extends Error {}
