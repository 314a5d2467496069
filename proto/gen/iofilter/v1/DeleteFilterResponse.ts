// Original file: proto/iofilter/v1/iofilter.proto

import type { DeviceRef as _iofilter_v1_DeviceRef, DeviceRef__Output as _iofilter_v1_DeviceRef__Output } from '../../iofilter/v1/DeviceRef';

export interface DeleteFilterResponse {
  'existed'?: (boolean);
  'device'?: (_iofilter_v1_DeviceRef | null);
  'removed'?: (number);
}

export interface DeleteFilterResponse__Output {
  'existed': (boolean);
  'device': (_iofilter_v1_DeviceRef__Output | null);
  'removed': (number);
}
