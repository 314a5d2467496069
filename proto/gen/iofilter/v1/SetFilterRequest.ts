// Original file: proto/iofilter/v1/iofilter.proto

import type { Range as _iofilter_v1_Range, Range__Output as _iofilter_v1_Range__Output } from '../../iofilter/v1/Range';
import type { Op as _iofilter_v1_Op, Op__Output as _iofilter_v1_Op__Output } from '../../iofilter/v1/Op';
import type { Backend as _iofilter_v1_Backend, Backend__Output as _iofilter_v1_Backend__Output } from '../../iofilter/v1/Backend';
import type { Fault as _iofilter_v1_Fault, Fault__Output as _iofilter_v1_Fault__Output } from '../../iofilter/v1/Fault';
import type { FilterView as _iofilter_v1_FilterView, FilterView__Output as _iofilter_v1_FilterView__Output } from '../../iofilter/v1/FilterView';
import type { Long } from '@grpc/proto-loader';

export interface SetFilterRequest {
  'device'?: (string);
  'ranges'?: (_iofilter_v1_Range)[];
  'wholeDeviceOps'?: (_iofilter_v1_Op)[];
  'ttlMs'?: (number | string | Long);
  'probability'?: (number | string);
  'maxFailures'?: (number | string | Long);
  'file'?: (string);
  'cgroupPath'?: (string);
  'cgroupId'?: (number | string | Long);
  'pid'?: (number);
  'eventsPerSecond'?: (number);
  'eventsSpared'?: (boolean);
  'backend'?: (_iofilter_v1_Backend);
  'fault'?: (_iofilter_v1_Fault | null);
  'view'?: (_iofilter_v1_FilterView);
  'packedRanges'?: (Buffer | Uint8Array | string);
  '_probability'?: "probability";
  '_eventsPerSecond'?: "eventsPerSecond";
}

export interface SetFilterRequest__Output {
  'device': (string);
  'ranges': (_iofilter_v1_Range__Output)[];
  'wholeDeviceOps': (_iofilter_v1_Op__Output)[];
  'ttlMs': (string);
  'probability'?: (number);
  'maxFailures': (string);
  'file': (string);
  'cgroupPath': (string);
  'cgroupId': (string);
  'pid': (number);
  'eventsPerSecond'?: (number);
  'eventsSpared': (boolean);
  'backend': (_iofilter_v1_Backend__Output);
  'fault': (_iofilter_v1_Fault__Output | null);
  'view': (_iofilter_v1_FilterView__Output);
  'packedRanges': (Buffer);
  '_probability'?: "probability";
  '_eventsPerSecond'?: "eventsPerSecond";
}
