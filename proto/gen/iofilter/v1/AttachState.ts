// Original file: proto/iofilter/v1/iofilter.proto

import type { Mode as _iofilter_v1_Mode, Mode__Output as _iofilter_v1_Mode__Output } from '../../iofilter/v1/Mode';

export interface AttachState {
  'attached'?: (boolean);
  'mode'?: (_iofilter_v1_Mode);
  'pinDir'?: (string);
  'hook'?: (string);
  'progIds'?: (number)[];
  'linkIds'?: (number)[];
  'adopted'?: (boolean);
  'maxDisks'?: (number);
}

export interface AttachState__Output {
  'attached': (boolean);
  'mode': (_iofilter_v1_Mode__Output);
  'pinDir': (string);
  'hook': (string);
  'progIds': (number)[];
  'linkIds': (number)[];
  'adopted': (boolean);
  'maxDisks': (number);
}
