// Original file: proto/iofilter/v1/iofilter.proto

import type { DeviceRef as _iofilter_v1_DeviceRef, DeviceRef__Output as _iofilter_v1_DeviceRef__Output } from '../../iofilter/v1/DeviceRef';
import type { RangeStatus as _iofilter_v1_RangeStatus, RangeStatus__Output as _iofilter_v1_RangeStatus__Output } from '../../iofilter/v1/RangeStatus';
import type { CgroupRef as _iofilter_v1_CgroupRef, CgroupRef__Output as _iofilter_v1_CgroupRef__Output } from '../../iofilter/v1/CgroupRef';
import type { Backend as _iofilter_v1_Backend, Backend__Output as _iofilter_v1_Backend__Output } from '../../iofilter/v1/Backend';
import type { DmFilter as _iofilter_v1_DmFilter, DmFilter__Output as _iofilter_v1_DmFilter__Output } from '../../iofilter/v1/DmFilter';
import type { Fault as _iofilter_v1_Fault, Fault__Output as _iofilter_v1_Fault__Output } from '../../iofilter/v1/Fault';
import type { Long } from '@grpc/proto-loader';

export interface Filter {
  'device'?: (_iofilter_v1_DeviceRef | null);
  'wholeDevice'?: (boolean);
  'ranges'?: (_iofilter_v1_RangeStatus)[];
  'hasExpiry'?: (boolean);
  'remainingMs'?: (number | string | Long);
  'probability'?: (number | string);
  'maxFailures'?: (number | string | Long);
  'failures'?: (number | string | Long);
  'id'?: (number);
  'file'?: (string);
  'cgroup'?: (_iofilter_v1_CgroupRef | null);
  'matchedIos'?: (number | string | Long);
  'failedIos'?: (number | string | Long);
  'eventsPerSecond'?: (number);
  'eventsSpared'?: (boolean);
  'eventsDropped'?: (number | string | Long);
  'diskseq'?: (number | string | Long);
  'backend'?: (_iofilter_v1_Backend);
  'dm'?: (_iofilter_v1_DmFilter | null);
  'notCounted'?: (string);
  'fault'?: (_iofilter_v1_Fault | null);
}

export interface Filter__Output {
  'device': (_iofilter_v1_DeviceRef__Output | null);
  'wholeDevice': (boolean);
  'ranges': (_iofilter_v1_RangeStatus__Output)[];
  'hasExpiry': (boolean);
  'remainingMs': (string);
  'probability': (number);
  'maxFailures': (string);
  'failures': (string);
  'id': (number);
  'file': (string);
  'cgroup': (_iofilter_v1_CgroupRef__Output | null);
  'matchedIos': (string);
  'failedIos': (string);
  'eventsPerSecond': (number);
  'eventsSpared': (boolean);
  'eventsDropped': (string);
  'diskseq': (string);
  'backend': (_iofilter_v1_Backend__Output);
  'dm': (_iofilter_v1_DmFilter__Output | null);
  'notCounted': (string);
  'fault': (_iofilter_v1_Fault__Output | null);
}
