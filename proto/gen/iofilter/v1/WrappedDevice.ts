// Original file: proto/iofilter/v1/iofilter.proto

import type { DeviceRef as _iofilter_v1_DeviceRef, DeviceRef__Output as _iofilter_v1_DeviceRef__Output } from '../../iofilter/v1/DeviceRef';
import type { Long } from '@grpc/proto-loader';

export interface WrappedDevice {
  'name'?: (string);
  'dmName'?: (string);
  'path'?: (string);
  'device'?: (_iofilter_v1_DeviceRef | null);
  'below'?: (string);
  'belowDev'?: (string);
  'createdUnixMs'?: (number | string | Long);
}

export interface WrappedDevice__Output {
  'name': (string);
  'dmName': (string);
  'path': (string);
  'device': (_iofilter_v1_DeviceRef__Output | null);
  'below': (string);
  'belowDev': (string);
  'createdUnixMs': (string);
}
