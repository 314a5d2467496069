import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { AttachRequest as _iofilter_v1_AttachRequest, AttachRequest__Output as _iofilter_v1_AttachRequest__Output } from './iofilter/v1/AttachRequest';
import type { AttachResponse as _iofilter_v1_AttachResponse, AttachResponse__Output as _iofilter_v1_AttachResponse__Output } from './iofilter/v1/AttachResponse';
import type { AttachState as _iofilter_v1_AttachState, AttachState__Output as _iofilter_v1_AttachState__Output } from './iofilter/v1/AttachState';
import type { BackendCapability as _iofilter_v1_BackendCapability, BackendCapability__Output as _iofilter_v1_BackendCapability__Output } from './iofilter/v1/BackendCapability';
import type { CgroupRef as _iofilter_v1_CgroupRef, CgroupRef__Output as _iofilter_v1_CgroupRef__Output } from './iofilter/v1/CgroupRef';
import type { ClearFiltersRequest as _iofilter_v1_ClearFiltersRequest, ClearFiltersRequest__Output as _iofilter_v1_ClearFiltersRequest__Output } from './iofilter/v1/ClearFiltersRequest';
import type { ClearFiltersResponse as _iofilter_v1_ClearFiltersResponse, ClearFiltersResponse__Output as _iofilter_v1_ClearFiltersResponse__Output } from './iofilter/v1/ClearFiltersResponse';
import type { CorruptFault as _iofilter_v1_CorruptFault, CorruptFault__Output as _iofilter_v1_CorruptFault__Output } from './iofilter/v1/CorruptFault';
import type { DelayFault as _iofilter_v1_DelayFault, DelayFault__Output as _iofilter_v1_DelayFault__Output } from './iofilter/v1/DelayFault';
import type { DeleteFilterRequest as _iofilter_v1_DeleteFilterRequest, DeleteFilterRequest__Output as _iofilter_v1_DeleteFilterRequest__Output } from './iofilter/v1/DeleteFilterRequest';
import type { DeleteFilterResponse as _iofilter_v1_DeleteFilterResponse, DeleteFilterResponse__Output as _iofilter_v1_DeleteFilterResponse__Output } from './iofilter/v1/DeleteFilterResponse';
import type { DetachRequest as _iofilter_v1_DetachRequest, DetachRequest__Output as _iofilter_v1_DetachRequest__Output } from './iofilter/v1/DetachRequest';
import type { DetachResponse as _iofilter_v1_DetachResponse, DetachResponse__Output as _iofilter_v1_DetachResponse__Output } from './iofilter/v1/DetachResponse';
import type { DeviceRef as _iofilter_v1_DeviceRef, DeviceRef__Output as _iofilter_v1_DeviceRef__Output } from './iofilter/v1/DeviceRef';
import type { DmFilter as _iofilter_v1_DmFilter, DmFilter__Output as _iofilter_v1_DmFilter__Output } from './iofilter/v1/DmFilter';
import type { DropWritesFault as _iofilter_v1_DropWritesFault, DropWritesFault__Output as _iofilter_v1_DropWritesFault__Output } from './iofilter/v1/DropWritesFault';
import type { ErrorFault as _iofilter_v1_ErrorFault, ErrorFault__Output as _iofilter_v1_ErrorFault__Output } from './iofilter/v1/ErrorFault';
import type { Fault as _iofilter_v1_Fault, Fault__Output as _iofilter_v1_Fault__Output } from './iofilter/v1/Fault';
import type { Filter as _iofilter_v1_Filter, Filter__Output as _iofilter_v1_Filter__Output } from './iofilter/v1/Filter';
import type { IoEvent as _iofilter_v1_IoEvent, IoEvent__Output as _iofilter_v1_IoEvent__Output } from './iofilter/v1/IoEvent';
import type { IoFilterServiceClient as _iofilter_v1_IoFilterServiceClient, IoFilterServiceDefinition as _iofilter_v1_IoFilterServiceDefinition } from './iofilter/v1/IoFilterService';
import type { KernelFeatures as _iofilter_v1_KernelFeatures, KernelFeatures__Output as _iofilter_v1_KernelFeatures__Output } from './iofilter/v1/KernelFeatures';
import type { Limits as _iofilter_v1_Limits, Limits__Output as _iofilter_v1_Limits__Output } from './iofilter/v1/Limits';
import type { Lost as _iofilter_v1_Lost, Lost__Output as _iofilter_v1_Lost__Output } from './iofilter/v1/Lost';
import type { ModeCapability as _iofilter_v1_ModeCapability, ModeCapability__Output as _iofilter_v1_ModeCapability__Output } from './iofilter/v1/ModeCapability';
import type { ProgramStats as _iofilter_v1_ProgramStats, ProgramStats__Output as _iofilter_v1_ProgramStats__Output } from './iofilter/v1/ProgramStats';
import type { Range as _iofilter_v1_Range, Range__Output as _iofilter_v1_Range__Output } from './iofilter/v1/Range';
import type { RangeStatus as _iofilter_v1_RangeStatus, RangeStatus__Output as _iofilter_v1_RangeStatus__Output } from './iofilter/v1/RangeStatus';
import type { SelfTest as _iofilter_v1_SelfTest, SelfTest__Output as _iofilter_v1_SelfTest__Output } from './iofilter/v1/SelfTest';
import type { SetFilterRequest as _iofilter_v1_SetFilterRequest, SetFilterRequest__Output as _iofilter_v1_SetFilterRequest__Output } from './iofilter/v1/SetFilterRequest';
import type { SetFilterResponse as _iofilter_v1_SetFilterResponse, SetFilterResponse__Output as _iofilter_v1_SetFilterResponse__Output } from './iofilter/v1/SetFilterResponse';
import type { StatusRequest as _iofilter_v1_StatusRequest, StatusRequest__Output as _iofilter_v1_StatusRequest__Output } from './iofilter/v1/StatusRequest';
import type { StatusResponse as _iofilter_v1_StatusResponse, StatusResponse__Output as _iofilter_v1_StatusResponse__Output } from './iofilter/v1/StatusResponse';
import type { ThrottleFault as _iofilter_v1_ThrottleFault, ThrottleFault__Output as _iofilter_v1_ThrottleFault__Output } from './iofilter/v1/ThrottleFault';
import type { UnwrapRequest as _iofilter_v1_UnwrapRequest, UnwrapRequest__Output as _iofilter_v1_UnwrapRequest__Output } from './iofilter/v1/UnwrapRequest';
import type { UnwrapResponse as _iofilter_v1_UnwrapResponse, UnwrapResponse__Output as _iofilter_v1_UnwrapResponse__Output } from './iofilter/v1/UnwrapResponse';
import type { WatchEvent as _iofilter_v1_WatchEvent, WatchEvent__Output as _iofilter_v1_WatchEvent__Output } from './iofilter/v1/WatchEvent';
import type { WatchRequest as _iofilter_v1_WatchRequest, WatchRequest__Output as _iofilter_v1_WatchRequest__Output } from './iofilter/v1/WatchRequest';
import type { WrapRequest as _iofilter_v1_WrapRequest, WrapRequest__Output as _iofilter_v1_WrapRequest__Output } from './iofilter/v1/WrapRequest';
import type { WrapResponse as _iofilter_v1_WrapResponse, WrapResponse__Output as _iofilter_v1_WrapResponse__Output } from './iofilter/v1/WrapResponse';
import type { WrappedDevice as _iofilter_v1_WrappedDevice, WrappedDevice__Output as _iofilter_v1_WrappedDevice__Output } from './iofilter/v1/WrappedDevice';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  iofilter: {
    v1: {
      AttachPolicy: EnumTypeDefinition
      AttachRequest: MessageTypeDefinition<_iofilter_v1_AttachRequest, _iofilter_v1_AttachRequest__Output>
      AttachResponse: MessageTypeDefinition<_iofilter_v1_AttachResponse, _iofilter_v1_AttachResponse__Output>
      AttachState: MessageTypeDefinition<_iofilter_v1_AttachState, _iofilter_v1_AttachState__Output>
      Backend: EnumTypeDefinition
      BackendCapability: MessageTypeDefinition<_iofilter_v1_BackendCapability, _iofilter_v1_BackendCapability__Output>
      CgroupRef: MessageTypeDefinition<_iofilter_v1_CgroupRef, _iofilter_v1_CgroupRef__Output>
      ClearFiltersRequest: MessageTypeDefinition<_iofilter_v1_ClearFiltersRequest, _iofilter_v1_ClearFiltersRequest__Output>
      ClearFiltersResponse: MessageTypeDefinition<_iofilter_v1_ClearFiltersResponse, _iofilter_v1_ClearFiltersResponse__Output>
      CorruptDirection: EnumTypeDefinition
      CorruptFault: MessageTypeDefinition<_iofilter_v1_CorruptFault, _iofilter_v1_CorruptFault__Output>
      DelayFault: MessageTypeDefinition<_iofilter_v1_DelayFault, _iofilter_v1_DelayFault__Output>
      DeleteFilterRequest: MessageTypeDefinition<_iofilter_v1_DeleteFilterRequest, _iofilter_v1_DeleteFilterRequest__Output>
      DeleteFilterResponse: MessageTypeDefinition<_iofilter_v1_DeleteFilterResponse, _iofilter_v1_DeleteFilterResponse__Output>
      DetachRequest: MessageTypeDefinition<_iofilter_v1_DetachRequest, _iofilter_v1_DetachRequest__Output>
      DetachResponse: MessageTypeDefinition<_iofilter_v1_DetachResponse, _iofilter_v1_DetachResponse__Output>
      DeviceRef: MessageTypeDefinition<_iofilter_v1_DeviceRef, _iofilter_v1_DeviceRef__Output>
      DmFilter: MessageTypeDefinition<_iofilter_v1_DmFilter, _iofilter_v1_DmFilter__Output>
      DropWritesFault: MessageTypeDefinition<_iofilter_v1_DropWritesFault, _iofilter_v1_DropWritesFault__Output>
      ErrorFault: MessageTypeDefinition<_iofilter_v1_ErrorFault, _iofilter_v1_ErrorFault__Output>
      ErrorStatus: EnumTypeDefinition
      Fault: MessageTypeDefinition<_iofilter_v1_Fault, _iofilter_v1_Fault__Output>
      Filter: MessageTypeDefinition<_iofilter_v1_Filter, _iofilter_v1_Filter__Output>
      FilterView: EnumTypeDefinition
      IoEvent: MessageTypeDefinition<_iofilter_v1_IoEvent, _iofilter_v1_IoEvent__Output>
      IoFilterService: SubtypeConstructor<typeof grpc.Client, _iofilter_v1_IoFilterServiceClient> & { service: _iofilter_v1_IoFilterServiceDefinition }
      KernelFeatures: MessageTypeDefinition<_iofilter_v1_KernelFeatures, _iofilter_v1_KernelFeatures__Output>
      Limits: MessageTypeDefinition<_iofilter_v1_Limits, _iofilter_v1_Limits__Output>
      Lost: MessageTypeDefinition<_iofilter_v1_Lost, _iofilter_v1_Lost__Output>
      Mode: EnumTypeDefinition
      ModeCapability: MessageTypeDefinition<_iofilter_v1_ModeCapability, _iofilter_v1_ModeCapability__Output>
      Op: EnumTypeDefinition
      Outcome: EnumTypeDefinition
      ProgramStats: MessageTypeDefinition<_iofilter_v1_ProgramStats, _iofilter_v1_ProgramStats__Output>
      Range: MessageTypeDefinition<_iofilter_v1_Range, _iofilter_v1_Range__Output>
      RangeStatus: MessageTypeDefinition<_iofilter_v1_RangeStatus, _iofilter_v1_RangeStatus__Output>
      SelfTest: MessageTypeDefinition<_iofilter_v1_SelfTest, _iofilter_v1_SelfTest__Output>
      SetFilterRequest: MessageTypeDefinition<_iofilter_v1_SetFilterRequest, _iofilter_v1_SetFilterRequest__Output>
      SetFilterResponse: MessageTypeDefinition<_iofilter_v1_SetFilterResponse, _iofilter_v1_SetFilterResponse__Output>
      StatusRequest: MessageTypeDefinition<_iofilter_v1_StatusRequest, _iofilter_v1_StatusRequest__Output>
      StatusResponse: MessageTypeDefinition<_iofilter_v1_StatusResponse, _iofilter_v1_StatusResponse__Output>
      ThrottleFault: MessageTypeDefinition<_iofilter_v1_ThrottleFault, _iofilter_v1_ThrottleFault__Output>
      UnwrapRequest: MessageTypeDefinition<_iofilter_v1_UnwrapRequest, _iofilter_v1_UnwrapRequest__Output>
      UnwrapResponse: MessageTypeDefinition<_iofilter_v1_UnwrapResponse, _iofilter_v1_UnwrapResponse__Output>
      WatchEvent: MessageTypeDefinition<_iofilter_v1_WatchEvent, _iofilter_v1_WatchEvent__Output>
      WatchRequest: MessageTypeDefinition<_iofilter_v1_WatchRequest, _iofilter_v1_WatchRequest__Output>
      WrapRequest: MessageTypeDefinition<_iofilter_v1_WrapRequest, _iofilter_v1_WrapRequest__Output>
      WrapResponse: MessageTypeDefinition<_iofilter_v1_WrapResponse, _iofilter_v1_WrapResponse__Output>
      WrappedDevice: MessageTypeDefinition<_iofilter_v1_WrappedDevice, _iofilter_v1_WrappedDevice__Output>
    }
  }
}

