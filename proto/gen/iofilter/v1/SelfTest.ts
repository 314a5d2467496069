// Original file: proto/iofilter/v1/iofilter.proto

import type { Long } from '@grpc/proto-loader';

export interface SelfTest {
  'passed'?: (boolean);
  'atUnixMs'?: (number | string | Long);
  'detail'?: (string);
}

export interface SelfTest__Output {
  'passed': (boolean);
  'atUnixMs': (string);
  'detail': (string);
}
