// Original file: proto/iofilter/v1/iofilter.proto

import type { DeviceRef as _iofilter_v1_DeviceRef, DeviceRef__Output as _iofilter_v1_DeviceRef__Output } from '../../iofilter/v1/DeviceRef';
import type { Op as _iofilter_v1_Op, Op__Output as _iofilter_v1_Op__Output } from '../../iofilter/v1/Op';
import type { Outcome as _iofilter_v1_Outcome, Outcome__Output as _iofilter_v1_Outcome__Output } from '../../iofilter/v1/Outcome';
import type { Long } from '@grpc/proto-loader';

export interface IoEvent {
  'timeUnixNs'?: (number | string | Long);
  'device'?: (_iofilter_v1_DeviceRef | null);
  'disk'?: (_iofilter_v1_DeviceRef | null);
  'sector'?: (number | string | Long);
  'deviceSector'?: (number | string | Long);
  'nrSectors'?: (number);
  'ops'?: (_iofilter_v1_Op)[];
  'filterId'?: (number);
  'rangeIndex'?: (number);
  'outcome'?: (_iofilter_v1_Outcome);
  'pid'?: (number);
  'comm'?: (string);
  'cgroupId'?: (number | string | Long);
}

export interface IoEvent__Output {
  'timeUnixNs': (string);
  'device': (_iofilter_v1_DeviceRef__Output | null);
  'disk': (_iofilter_v1_DeviceRef__Output | null);
  'sector': (string);
  'deviceSector': (string);
  'nrSectors': (number);
  'ops': (_iofilter_v1_Op__Output)[];
  'filterId': (number);
  'rangeIndex': (number);
  'outcome': (_iofilter_v1_Outcome__Output);
  'pid': (number);
  'comm': (string);
  'cgroupId': (string);
}
