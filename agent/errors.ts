// gRPC status errors for the service, and the one place native (libbpf) errors are
// mapped to gRPC codes.
import { status } from '@grpc/grpc-js';

export class RpcError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
  }
}

export const invalid = (msg: string) => new RpcError(status.INVALID_ARGUMENT, msg);
export const notFound = (msg: string) => new RpcError(status.NOT_FOUND, msg);
export const precondition = (msg: string) => new RpcError(status.FAILED_PRECONDITION, msg);
export const exhausted = (msg: string) => new RpcError(status.RESOURCE_EXHAUSTED, msg);
export const denied = (msg: string) => new RpcError(status.PERMISSION_DENIED, msg);

/** Maps an error from native/ (or anything else) to an RpcError. */
export function fromNative(err: unknown, what: string): RpcError {
  if (err instanceof RpcError) return err;
  const e = err as Error & { code?: string };
  const msg = `${what}: ${e?.message ?? String(err)}`;
  if (e instanceof RangeError || e instanceof TypeError) return invalid(msg);
  switch (e?.code) {
    case 'ENOSPC':
      return exhausted(msg);
    case 'E2BIG':
      return exhausted(msg);
    case 'ENOTSUP':
    case 'ENOTATTACHED':
      return precondition(msg);
    case 'ENOENT':
      return notFound(msg);
    default:
      return new RpcError(status.INTERNAL, msg);
  }
}
