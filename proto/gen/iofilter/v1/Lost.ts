// Original file: proto/iofilter/v1/iofilter.proto

import type { Long } from '@grpc/proto-loader';

export interface Lost {
  'count'?: (number | string | Long);
  'reason'?: (string);
}

export interface Lost__Output {
  'count': (string);
  'reason': (string);
}
