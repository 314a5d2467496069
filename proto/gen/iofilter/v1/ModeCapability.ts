// Original file: proto/iofilter/v1/iofilter.proto

import type { Mode as _iofilter_v1_Mode, Mode__Output as _iofilter_v1_Mode__Output } from '../../iofilter/v1/Mode';

export interface ModeCapability {
  'mode'?: (_iofilter_v1_Mode);
  'available'?: (boolean);
  'hook'?: (string);
  'reason'?: (string);
}

export interface ModeCapability__Output {
  'mode': (_iofilter_v1_Mode__Output);
  'available': (boolean);
  'hook': (string);
  'reason': (string);
}
