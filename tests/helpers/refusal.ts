// The agent's refusals, as {code name, message}, for tests that call agent code directly.
import { status } from '@grpc/grpc-js';
import { RpcError } from '../../agent/errors';

/** The RpcError fn throws; fails the test if it throws none or something else. */
export function refusal(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(RpcError);
    return { code: status[(e as RpcError).code], message: (e as Error).message };
  }
  throw new Error('expected a refusal, got none');
}

/** The same for a promise. */
export async function refusalOf(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  const e = await p.then(
    () => null,
    (x: unknown) => x,
  );
  if (!e) throw new Error('expected a refusal, got none');
  expect(e).toBeInstanceOf(RpcError);
  return { code: status[(e as RpcError).code], message: (e as Error).message };
}

/** The gRPC error a client call ends with (code number, details); fails the test if it succeeds. */
export async function grpcRefusalOf(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  const e = (await p.then(() => null, (x: unknown) => x)) as { code: number; details: string } | null;
  if (!e) throw new Error('expected a refusal, got none');
  return { code: e.code, details: e.details };
}
