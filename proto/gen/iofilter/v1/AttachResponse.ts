// Original file: proto/iofilter/v1/iofilter.proto

import type { AttachState as _iofilter_v1_AttachState, AttachState__Output as _iofilter_v1_AttachState__Output } from '../../iofilter/v1/AttachState';

export interface AttachResponse {
  'state'?: (_iofilter_v1_AttachState | null);
}

export interface AttachResponse__Output {
  'state': (_iofilter_v1_AttachState__Output | null);
}
