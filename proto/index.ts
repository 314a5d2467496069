// Loads the IoFilterService contract with the one set of loader options that the
// agent, the client and the generated types (npm run build:proto) all agree on.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { findUp } from '../common/find-up';
import type { ProtoGrpcType } from './gen/iofilter';

/** Must match the flags of `build:proto` in package.json. */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

export const SERVICE_NAME = 'iofilter.v1.IoFilterService';

export function protoFile(): string {
  // From source (proto/) or from the build (dist/proto/): the .proto stays in the source tree.
  const f = findUp(__dirname, 'proto/iofilter/v1/iofilter.proto');
  if (!f) throw new Error('iofilter.proto not found above ' + __dirname);
  return f;
}

let cached: { def: protoLoader.PackageDefinition; grpcObj: ProtoGrpcType } | undefined;

export function loadProto(): { def: protoLoader.PackageDefinition; grpcObj: ProtoGrpcType } {
  if (!cached) {
    const def = protoLoader.loadSync(protoFile(), LOADER_OPTIONS);
    cached = { def, grpcObj: grpc.loadPackageDefinition(def) as unknown as ProtoGrpcType };
  }
  return cached;
}

export type { ProtoGrpcType };
