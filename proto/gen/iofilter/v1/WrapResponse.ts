// Original file: proto/iofilter/v1/iofilter.proto

import type { WrappedDevice as _iofilter_v1_WrappedDevice, WrappedDevice__Output as _iofilter_v1_WrappedDevice__Output } from '../../iofilter/v1/WrappedDevice';

export interface WrapResponse {
  'wrapped'?: (_iofilter_v1_WrappedDevice | null);
}

export interface WrapResponse__Output {
  'wrapped': (_iofilter_v1_WrappedDevice__Output | null);
}
