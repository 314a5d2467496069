// Original file: proto/iofilter/v1/iofilter.proto

import type { ErrorFault as _iofilter_v1_ErrorFault, ErrorFault__Output as _iofilter_v1_ErrorFault__Output } from '../../iofilter/v1/ErrorFault';
import type { DelayFault as _iofilter_v1_DelayFault, DelayFault__Output as _iofilter_v1_DelayFault__Output } from '../../iofilter/v1/DelayFault';
import type { ThrottleFault as _iofilter_v1_ThrottleFault, ThrottleFault__Output as _iofilter_v1_ThrottleFault__Output } from '../../iofilter/v1/ThrottleFault';
import type { DropWritesFault as _iofilter_v1_DropWritesFault, DropWritesFault__Output as _iofilter_v1_DropWritesFault__Output } from '../../iofilter/v1/DropWritesFault';
import type { CorruptFault as _iofilter_v1_CorruptFault, CorruptFault__Output as _iofilter_v1_CorruptFault__Output } from '../../iofilter/v1/CorruptFault';

export interface Fault {
  'error'?: (_iofilter_v1_ErrorFault | null);
  'delay'?: (_iofilter_v1_DelayFault | null);
  'throttle'?: (_iofilter_v1_ThrottleFault | null);
  'dropWrites'?: (_iofilter_v1_DropWritesFault | null);
  'corrupt'?: (_iofilter_v1_CorruptFault | null);
  'kind'?: "error"|"delay"|"throttle"|"dropWrites"|"corrupt";
}

export interface Fault__Output {
  'error'?: (_iofilter_v1_ErrorFault__Output | null);
  'delay'?: (_iofilter_v1_DelayFault__Output | null);
  'throttle'?: (_iofilter_v1_ThrottleFault__Output | null);
  'dropWrites'?: (_iofilter_v1_DropWritesFault__Output | null);
  'corrupt'?: (_iofilter_v1_CorruptFault__Output | null);
  'kind'?: "error"|"delay"|"throttle"|"dropWrites"|"corrupt";
}
