// Original file: proto/iofilter/v1/iofilter.proto

import type { Long } from '@grpc/proto-loader';

export interface DeleteFilterRequest {
  'device'?: (string);
  'cgroupPath'?: (string);
  'cgroupId'?: (number | string | Long);
  'pid'?: (number);
  'allScopes'?: (boolean);
  'id'?: (number);
}

export interface DeleteFilterRequest__Output {
  'device': (string);
  'cgroupPath': (string);
  'cgroupId': (string);
  'pid': (number);
  'allScopes': (boolean);
  'id': (number);
}
