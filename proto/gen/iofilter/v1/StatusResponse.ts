// Original file: proto/iofilter/v1/iofilter.proto

import type { ModeCapability as _iofilter_v1_ModeCapability, ModeCapability__Output as _iofilter_v1_ModeCapability__Output } from '../../iofilter/v1/ModeCapability';
import type { AttachState as _iofilter_v1_AttachState, AttachState__Output as _iofilter_v1_AttachState__Output } from '../../iofilter/v1/AttachState';
import type { Filter as _iofilter_v1_Filter, Filter__Output as _iofilter_v1_Filter__Output } from '../../iofilter/v1/Filter';
import type { Limits as _iofilter_v1_Limits, Limits__Output as _iofilter_v1_Limits__Output } from '../../iofilter/v1/Limits';
import type { KernelFeatures as _iofilter_v1_KernelFeatures, KernelFeatures__Output as _iofilter_v1_KernelFeatures__Output } from '../../iofilter/v1/KernelFeatures';
import type { BackendCapability as _iofilter_v1_BackendCapability, BackendCapability__Output as _iofilter_v1_BackendCapability__Output } from '../../iofilter/v1/BackendCapability';
import type { WrappedDevice as _iofilter_v1_WrappedDevice, WrappedDevice__Output as _iofilter_v1_WrappedDevice__Output } from '../../iofilter/v1/WrappedDevice';
import type { Long } from '@grpc/proto-loader';

export interface StatusResponse {
  'kernelRelease'?: (string);
  'btf'?: (boolean);
  'lockdown'?: (string);
  'capabilities'?: (_iofilter_v1_ModeCapability)[];
  'state'?: (_iofilter_v1_AttachState | null);
  'filters'?: (_iofilter_v1_Filter)[];
  'agentVersion'?: (string);
  'uptimeMs'?: (number | string | Long);
  'hostname'?: (string);
  'limits'?: (_iofilter_v1_Limits | null);
  'attachError'?: (string);
  'features'?: (_iofilter_v1_KernelFeatures | null);
  'truncatedIos'?: (number | string | Long);
  'eventsLost'?: (number | string | Long);
  'backends'?: (_iofilter_v1_BackendCapability)[];
  'wrapped'?: (_iofilter_v1_WrappedDevice)[];
}

export interface StatusResponse__Output {
  'kernelRelease': (string);
  'btf': (boolean);
  'lockdown': (string);
  'capabilities': (_iofilter_v1_ModeCapability__Output)[];
  'state': (_iofilter_v1_AttachState__Output | null);
  'filters': (_iofilter_v1_Filter__Output)[];
  'agentVersion': (string);
  'uptimeMs': (string);
  'hostname': (string);
  'limits': (_iofilter_v1_Limits__Output | null);
  'attachError': (string);
  'features': (_iofilter_v1_KernelFeatures__Output | null);
  'truncatedIos': (string);
  'eventsLost': (string);
  'backends': (_iofilter_v1_BackendCapability__Output)[];
  'wrapped': (_iofilter_v1_WrappedDevice__Output)[];
}
