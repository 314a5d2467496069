// Original file: proto/iofilter/v1/iofilter.proto

import type { Long } from '@grpc/proto-loader';

export interface CgroupRef {
  'id'?: (number | string | Long);
  'path'?: (string);
  'fromPid'?: (number);
}

export interface CgroupRef__Output {
  'id': (string);
  'path': (string);
  'fromPid': (number);
}
