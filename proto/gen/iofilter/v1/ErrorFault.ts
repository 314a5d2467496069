// Original file: proto/iofilter/v1/iofilter.proto

import type { ErrorStatus as _iofilter_v1_ErrorStatus, ErrorStatus__Output as _iofilter_v1_ErrorStatus__Output } from '../../iofilter/v1/ErrorStatus';

export interface ErrorFault {
  'status'?: (_iofilter_v1_ErrorStatus);
}

export interface ErrorFault__Output {
  'status': (_iofilter_v1_ErrorStatus__Output);
}
