// The gRPC error a call ends with, for tests that expect a refusal; fails the test if
// the call succeeds.
import type * as grpc from '@grpc/grpc-js';

export async function refusalOf(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  const e = (await p.then(() => null, (x: unknown) => x)) as grpc.ServiceError | null;
  if (!e) throw new Error('expected a refusal, got none');
  return { code: e.code, details: e.details };
}
