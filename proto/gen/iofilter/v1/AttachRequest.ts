// Original file: proto/iofilter/v1/iofilter.proto

import type { Mode as _iofilter_v1_Mode, Mode__Output as _iofilter_v1_Mode__Output } from '../../iofilter/v1/Mode';

export interface AttachRequest {
  'mode'?: (_iofilter_v1_Mode);
}

export interface AttachRequest__Output {
  'mode': (_iofilter_v1_Mode__Output);
}
