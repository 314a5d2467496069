import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { AttachRequest as _iofilter_v1_AttachRequest, AttachRequest__Output as _iofilter_v1_AttachRequest__Output } from './iofilter/v1/AttachRequest';
import type { AttachResponse as _iofilter_v1_AttachResponse, AttachResponse__Output as _iofilter_v1_AttachResponse__Output } from './iofilter/v1/AttachResponse';
import type { AttachState as _iofilter_v1_AttachState, AttachState__Output as _iofilter_v1_AttachState__Output } from './iofilter/v1/AttachState';
import type { DeleteFilterRequest as _iofilter_v1_DeleteFilterRequest, DeleteFilterRequest__Output as _iofilter_v1_DeleteFilterRequest__Output } from './iofilter/v1/DeleteFilterRequest';
import type { DeleteFilterResponse as _iofilter_v1_DeleteFilterResponse, DeleteFilterResponse__Output as _iofilter_v1_DeleteFilterResponse__Output } from './iofilter/v1/DeleteFilterResponse';
import type { DetachRequest as _iofilter_v1_DetachRequest, DetachRequest__Output as _iofilter_v1_DetachRequest__Output } from './iofilter/v1/DetachRequest';
import type { DetachResponse as _iofilter_v1_DetachResponse, DetachResponse__Output as _iofilter_v1_DetachResponse__Output } from './iofilter/v1/DetachResponse';
import type { DeviceRef as _iofilter_v1_DeviceRef, DeviceRef__Output as _iofilter_v1_DeviceRef__Output } from './iofilter/v1/DeviceRef';
import type { Filter as _iofilter_v1_Filter, Filter__Output as _iofilter_v1_Filter__Output } from './iofilter/v1/Filter';
import type { IoFilterServiceClient as _iofilter_v1_IoFilterServiceClient, IoFilterServiceDefinition as _iofilter_v1_IoFilterServiceDefinition } from './iofilter/v1/IoFilterService';
import type { Limits as _iofilter_v1_Limits, Limits__Output as _iofilter_v1_Limits__Output } from './iofilter/v1/Limits';
import type { ModeCapability as _iofilter_v1_ModeCapability, ModeCapability__Output as _iofilter_v1_ModeCapability__Output } from './iofilter/v1/ModeCapability';
import type { Range as _iofilter_v1_Range, Range__Output as _iofilter_v1_Range__Output } from './iofilter/v1/Range';
import type { RangeStatus as _iofilter_v1_RangeStatus, RangeStatus__Output as _iofilter_v1_RangeStatus__Output } from './iofilter/v1/RangeStatus';
import type { SetFilterRequest as _iofilter_v1_SetFilterRequest, SetFilterRequest__Output as _iofilter_v1_SetFilterRequest__Output } from './iofilter/v1/SetFilterRequest';
import type { SetFilterResponse as _iofilter_v1_SetFilterResponse, SetFilterResponse__Output as _iofilter_v1_SetFilterResponse__Output } from './iofilter/v1/SetFilterResponse';
import type { StatusRequest as _iofilter_v1_StatusRequest, StatusRequest__Output as _iofilter_v1_StatusRequest__Output } from './iofilter/v1/StatusRequest';
import type { StatusResponse as _iofilter_v1_StatusResponse, StatusResponse__Output as _iofilter_v1_StatusResponse__Output } from './iofilter/v1/StatusResponse';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  iofilter: {
    v1: {
      AttachRequest: MessageTypeDefinition<_iofilter_v1_AttachRequest, _iofilter_v1_AttachRequest__Output>
      AttachResponse: MessageTypeDefinition<_iofilter_v1_AttachResponse, _iofilter_v1_AttachResponse__Output>
      AttachState: MessageTypeDefinition<_iofilter_v1_AttachState, _iofilter_v1_AttachState__Output>
      DeleteFilterRequest: MessageTypeDefinition<_iofilter_v1_DeleteFilterRequest, _iofilter_v1_DeleteFilterRequest__Output>
      DeleteFilterResponse: MessageTypeDefinition<_iofilter_v1_DeleteFilterResponse, _iofilter_v1_DeleteFilterResponse__Output>
      DetachRequest: MessageTypeDefinition<_iofilter_v1_DetachRequest, _iofilter_v1_DetachRequest__Output>
      DetachResponse: MessageTypeDefinition<_iofilter_v1_DetachResponse, _iofilter_v1_DetachResponse__Output>
      DeviceRef: MessageTypeDefinition<_iofilter_v1_DeviceRef, _iofilter_v1_DeviceRef__Output>
      Filter: MessageTypeDefinition<_iofilter_v1_Filter, _iofilter_v1_Filter__Output>
      IoFilterService: SubtypeConstructor<typeof grpc.Client, _iofilter_v1_IoFilterServiceClient> & { service: _iofilter_v1_IoFilterServiceDefinition }
      Limits: MessageTypeDefinition<_iofilter_v1_Limits, _iofilter_v1_Limits__Output>
      Mode: EnumTypeDefinition
      ModeCapability: MessageTypeDefinition<_iofilter_v1_ModeCapability, _iofilter_v1_ModeCapability__Output>
      Op: EnumTypeDefinition
      Range: MessageTypeDefinition<_iofilter_v1_Range, _iofilter_v1_Range__Output>
      RangeStatus: MessageTypeDefinition<_iofilter_v1_RangeStatus, _iofilter_v1_RangeStatus__Output>
      SetFilterRequest: MessageTypeDefinition<_iofilter_v1_SetFilterRequest, _iofilter_v1_SetFilterRequest__Output>
      SetFilterResponse: MessageTypeDefinition<_iofilter_v1_SetFilterResponse, _iofilter_v1_SetFilterResponse__Output>
      StatusRequest: MessageTypeDefinition<_iofilter_v1_StatusRequest, _iofilter_v1_StatusRequest__Output>
      StatusResponse: MessageTypeDefinition<_iofilter_v1_StatusResponse, _iofilter_v1_StatusResponse__Output>
    }
  }
}

