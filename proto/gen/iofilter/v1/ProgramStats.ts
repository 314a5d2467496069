// Original file: proto/iofilter/v1/iofilter.proto

import type { Long } from '@grpc/proto-loader';

export interface ProgramStats {
  'progId'?: (number);
  'name'?: (string);
  'recursionMisses'?: (number | string | Long);
  'runCount'?: (number | string | Long);
  'linkMissed'?: (number | string | Long);
  '_recursionMisses'?: "recursionMisses";
  '_linkMissed'?: "linkMissed";
}

export interface ProgramStats__Output {
  'progId': (number);
  'name': (string);
  'recursionMisses'?: (string);
  'runCount': (string);
  'linkMissed'?: (string);
  '_recursionMisses'?: "recursionMisses";
  '_linkMissed'?: "linkMissed";
}
