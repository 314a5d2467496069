// Original file: proto/iofilter/v1/iofilter.proto

import type { Long } from '@grpc/proto-loader';

export interface Limits {
  'maxRangesPerDisk'?: (number);
  'maxFiltersPerDisk'?: (number);
  'maxTtlMs'?: (number | string | Long);
  'defaultTtlMs'?: (number | string | Long);
  'allowNoTtl'?: (boolean);
  'maxRangesPerFilter'?: (number);
  'maxOverlap'?: (number);
  'maxRangesPerIo'?: (number);
}

export interface Limits__Output {
  'maxRangesPerDisk': (number);
  'maxFiltersPerDisk': (number);
  'maxTtlMs': (string);
  'defaultTtlMs': (string);
  'allowNoTtl': (boolean);
  'maxRangesPerFilter': (number);
  'maxOverlap': (number);
  'maxRangesPerIo': (number);
}
