// Original file: proto/iofilter/v1/iofilter.proto

import type { Long } from '@grpc/proto-loader';

export interface ThrottleFault {
  'rbps'?: (number | string | Long);
  'wbps'?: (number | string | Long);
  'riops'?: (number | string | Long);
  'wiops'?: (number | string | Long);
}

export interface ThrottleFault__Output {
  'rbps': (string);
  'wbps': (string);
  'riops': (string);
  'wiops': (string);
}
