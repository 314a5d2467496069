// Original file: proto/iofilter/v1/iofilter.proto

import type { Op as _iofilter_v1_Op, Op__Output as _iofilter_v1_Op__Output } from '../../iofilter/v1/Op';
import type { Long } from '@grpc/proto-loader';

export interface Range {
  'start'?: (number | string | Long);
  'end'?: (number | string | Long);
  'ops'?: (_iofilter_v1_Op)[];
}

export interface Range__Output {
  'start': (string);
  'end': (string);
  'ops': (_iofilter_v1_Op__Output)[];
}
