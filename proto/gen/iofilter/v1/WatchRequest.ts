// Original file: proto/iofilter/v1/iofilter.proto

import type { Outcome as _iofilter_v1_Outcome, Outcome__Output as _iofilter_v1_Outcome__Output } from '../../iofilter/v1/Outcome';

export interface WatchRequest {
  'device'?: (string);
  'outcomes'?: (_iofilter_v1_Outcome)[];
  'filterId'?: (number);
}

export interface WatchRequest__Output {
  'device': (string);
  'outcomes': (_iofilter_v1_Outcome__Output)[];
  'filterId': (number);
}
