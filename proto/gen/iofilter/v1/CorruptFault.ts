// Original file: proto/iofilter/v1/iofilter.proto

import type { CorruptDirection as _iofilter_v1_CorruptDirection, CorruptDirection__Output as _iofilter_v1_CorruptDirection__Output } from '../../iofilter/v1/CorruptDirection';

export interface CorruptFault {
  'direction'?: (_iofilter_v1_CorruptDirection);
  'byte'?: (number);
  'value'?: (number);
  'perBillion'?: (number);
}

export interface CorruptFault__Output {
  'direction': (_iofilter_v1_CorruptDirection__Output);
  'byte': (number);
  'value': (number);
  'perBillion': (number);
}
