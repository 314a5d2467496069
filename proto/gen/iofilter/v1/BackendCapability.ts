// Original file: proto/iofilter/v1/iofilter.proto

import type { Backend as _iofilter_v1_Backend, Backend__Output as _iofilter_v1_Backend__Output } from '../../iofilter/v1/Backend';

export interface BackendCapability {
  'backend'?: (_iofilter_v1_Backend);
  'available'?: (boolean);
  'reason'?: (string);
  'detail'?: (string);
}

export interface BackendCapability__Output {
  'backend': (_iofilter_v1_Backend__Output);
  'available': (boolean);
  'reason': (string);
  'detail': (string);
}
