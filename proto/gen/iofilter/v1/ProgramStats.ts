// Original file: proto/iofilter/v1/iofilter.proto

import type { Long } from '@grpc/proto-loader';

export interface ProgramStats {
  'progId'?: (number);
  'name'?: (string);
  'recursionMisses'?: (number | string | Long);
  'runCount'?: (number | string | Long);
  '_recursionMisses'?: "recursionMisses";
}

export interface ProgramStats__Output {
  'progId': (number);
  'name': (string);
  'recursionMisses'?: (string);
  'runCount': (string);
  '_recursionMisses'?: "recursionMisses";
}
