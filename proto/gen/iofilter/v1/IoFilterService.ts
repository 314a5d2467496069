// Original file: proto/iofilter/v1/iofilter.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { AttachRequest as _iofilter_v1_AttachRequest, AttachRequest__Output as _iofilter_v1_AttachRequest__Output } from '../../iofilter/v1/AttachRequest';
import type { AttachResponse as _iofilter_v1_AttachResponse, AttachResponse__Output as _iofilter_v1_AttachResponse__Output } from '../../iofilter/v1/AttachResponse';
import type { ClearFiltersRequest as _iofilter_v1_ClearFiltersRequest, ClearFiltersRequest__Output as _iofilter_v1_ClearFiltersRequest__Output } from '../../iofilter/v1/ClearFiltersRequest';
import type { ClearFiltersResponse as _iofilter_v1_ClearFiltersResponse, ClearFiltersResponse__Output as _iofilter_v1_ClearFiltersResponse__Output } from '../../iofilter/v1/ClearFiltersResponse';
import type { DeleteFilterRequest as _iofilter_v1_DeleteFilterRequest, DeleteFilterRequest__Output as _iofilter_v1_DeleteFilterRequest__Output } from '../../iofilter/v1/DeleteFilterRequest';
import type { DeleteFilterResponse as _iofilter_v1_DeleteFilterResponse, DeleteFilterResponse__Output as _iofilter_v1_DeleteFilterResponse__Output } from '../../iofilter/v1/DeleteFilterResponse';
import type { DetachRequest as _iofilter_v1_DetachRequest, DetachRequest__Output as _iofilter_v1_DetachRequest__Output } from '../../iofilter/v1/DetachRequest';
import type { DetachResponse as _iofilter_v1_DetachResponse, DetachResponse__Output as _iofilter_v1_DetachResponse__Output } from '../../iofilter/v1/DetachResponse';
import type { SetFilterRequest as _iofilter_v1_SetFilterRequest, SetFilterRequest__Output as _iofilter_v1_SetFilterRequest__Output } from '../../iofilter/v1/SetFilterRequest';
import type { SetFilterResponse as _iofilter_v1_SetFilterResponse, SetFilterResponse__Output as _iofilter_v1_SetFilterResponse__Output } from '../../iofilter/v1/SetFilterResponse';
import type { StatusRequest as _iofilter_v1_StatusRequest, StatusRequest__Output as _iofilter_v1_StatusRequest__Output } from '../../iofilter/v1/StatusRequest';
import type { StatusResponse as _iofilter_v1_StatusResponse, StatusResponse__Output as _iofilter_v1_StatusResponse__Output } from '../../iofilter/v1/StatusResponse';
import type { UnwrapRequest as _iofilter_v1_UnwrapRequest, UnwrapRequest__Output as _iofilter_v1_UnwrapRequest__Output } from '../../iofilter/v1/UnwrapRequest';
import type { UnwrapResponse as _iofilter_v1_UnwrapResponse, UnwrapResponse__Output as _iofilter_v1_UnwrapResponse__Output } from '../../iofilter/v1/UnwrapResponse';
import type { WatchEvent as _iofilter_v1_WatchEvent, WatchEvent__Output as _iofilter_v1_WatchEvent__Output } from '../../iofilter/v1/WatchEvent';
import type { WatchRequest as _iofilter_v1_WatchRequest, WatchRequest__Output as _iofilter_v1_WatchRequest__Output } from '../../iofilter/v1/WatchRequest';
import type { WrapRequest as _iofilter_v1_WrapRequest, WrapRequest__Output as _iofilter_v1_WrapRequest__Output } from '../../iofilter/v1/WrapRequest';
import type { WrapResponse as _iofilter_v1_WrapResponse, WrapResponse__Output as _iofilter_v1_WrapResponse__Output } from '../../iofilter/v1/WrapResponse';

export interface IoFilterServiceClient extends grpc.Client {
  Attach(argument: _iofilter_v1_AttachRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_AttachResponse__Output>): grpc.ClientUnaryCall;
  Attach(argument: _iofilter_v1_AttachRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_iofilter_v1_AttachResponse__Output>): grpc.ClientUnaryCall;
  Attach(argument: _iofilter_v1_AttachRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_AttachResponse__Output>): grpc.ClientUnaryCall;
  Attach(argument: _iofilter_v1_AttachRequest, callback: grpc.requestCallback<_iofilter_v1_AttachResponse__Output>): grpc.ClientUnaryCall;
  attach(argument: _iofilter_v1_AttachRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_AttachResponse__Output>): grpc.ClientUnaryCall;
  attach(argument: _iofilter_v1_AttachRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_iofilter_v1_AttachResponse__Output>): grpc.ClientUnaryCall;
  attach(argument: _iofilter_v1_AttachRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_AttachResponse__Output>): grpc.ClientUnaryCall;
  attach(argument: _iofilter_v1_AttachRequest, callback: grpc.requestCallback<_iofilter_v1_AttachResponse__Output>): grpc.ClientUnaryCall;
  
  ClearFilters(argument: _iofilter_v1_ClearFiltersRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_ClearFiltersResponse__Output>): grpc.ClientUnaryCall;
  ClearFilters(argument: _iofilter_v1_ClearFiltersRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_iofilter_v1_ClearFiltersResponse__Output>): grpc.ClientUnaryCall;
  ClearFilters(argument: _iofilter_v1_ClearFiltersRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_ClearFiltersResponse__Output>): grpc.ClientUnaryCall;
  ClearFilters(argument: _iofilter_v1_ClearFiltersRequest, callback: grpc.requestCallback<_iofilter_v1_ClearFiltersResponse__Output>): grpc.ClientUnaryCall;
  clearFilters(argument: _iofilter_v1_ClearFiltersRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_ClearFiltersResponse__Output>): grpc.ClientUnaryCall;
  clearFilters(argument: _iofilter_v1_ClearFiltersRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_iofilter_v1_ClearFiltersResponse__Output>): grpc.ClientUnaryCall;
  clearFilters(argument: _iofilter_v1_ClearFiltersRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_ClearFiltersResponse__Output>): grpc.ClientUnaryCall;
  clearFilters(argument: _iofilter_v1_ClearFiltersRequest, callback: grpc.requestCallback<_iofilter_v1_ClearFiltersResponse__Output>): grpc.ClientUnaryCall;
  
  DeleteFilter(argument: _iofilter_v1_DeleteFilterRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_DeleteFilterResponse__Output>): grpc.ClientUnaryCall;
  DeleteFilter(argument: _iofilter_v1_DeleteFilterRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_iofilter_v1_DeleteFilterResponse__Output>): grpc.ClientUnaryCall;
  DeleteFilter(argument: _iofilter_v1_DeleteFilterRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_DeleteFilterResponse__Output>): grpc.ClientUnaryCall;
  DeleteFilter(argument: _iofilter_v1_DeleteFilterRequest, callback: grpc.requestCallback<_iofilter_v1_DeleteFilterResponse__Output>): grpc.ClientUnaryCall;
  deleteFilter(argument: _iofilter_v1_DeleteFilterRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_DeleteFilterResponse__Output>): grpc.ClientUnaryCall;
  deleteFilter(argument: _iofilter_v1_DeleteFilterRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_iofilter_v1_DeleteFilterResponse__Output>): grpc.ClientUnaryCall;
  deleteFilter(argument: _iofilter_v1_DeleteFilterRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_DeleteFilterResponse__Output>): grpc.ClientUnaryCall;
  deleteFilter(argument: _iofilter_v1_DeleteFilterRequest, callback: grpc.requestCallback<_iofilter_v1_DeleteFilterResponse__Output>): grpc.ClientUnaryCall;
  
  Detach(argument: _iofilter_v1_DetachRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_DetachResponse__Output>): grpc.ClientUnaryCall;
  Detach(argument: _iofilter_v1_DetachRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_iofilter_v1_DetachResponse__Output>): grpc.ClientUnaryCall;
  Detach(argument: _iofilter_v1_DetachRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_DetachResponse__Output>): grpc.ClientUnaryCall;
  Detach(argument: _iofilter_v1_DetachRequest, callback: grpc.requestCallback<_iofilter_v1_DetachResponse__Output>): grpc.ClientUnaryCall;
  detach(argument: _iofilter_v1_DetachRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_DetachResponse__Output>): grpc.ClientUnaryCall;
  detach(argument: _iofilter_v1_DetachRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_iofilter_v1_DetachResponse__Output>): grpc.ClientUnaryCall;
  detach(argument: _iofilter_v1_DetachRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_DetachResponse__Output>): grpc.ClientUnaryCall;
  detach(argument: _iofilter_v1_DetachRequest, callback: grpc.requestCallback<_iofilter_v1_DetachResponse__Output>): grpc.ClientUnaryCall;
  
  SetFilter(argument: _iofilter_v1_SetFilterRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_SetFilterResponse__Output>): grpc.ClientUnaryCall;
  SetFilter(argument: _iofilter_v1_SetFilterRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_iofilter_v1_SetFilterResponse__Output>): grpc.ClientUnaryCall;
  SetFilter(argument: _iofilter_v1_SetFilterRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_SetFilterResponse__Output>): grpc.ClientUnaryCall;
  SetFilter(argument: _iofilter_v1_SetFilterRequest, callback: grpc.requestCallback<_iofilter_v1_SetFilterResponse__Output>): grpc.ClientUnaryCall;
  setFilter(argument: _iofilter_v1_SetFilterRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_SetFilterResponse__Output>): grpc.ClientUnaryCall;
  setFilter(argument: _iofilter_v1_SetFilterRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_iofilter_v1_SetFilterResponse__Output>): grpc.ClientUnaryCall;
  setFilter(argument: _iofilter_v1_SetFilterRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_SetFilterResponse__Output>): grpc.ClientUnaryCall;
  setFilter(argument: _iofilter_v1_SetFilterRequest, callback: grpc.requestCallback<_iofilter_v1_SetFilterResponse__Output>): grpc.ClientUnaryCall;
  
  Status(argument: _iofilter_v1_StatusRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_StatusResponse__Output>): grpc.ClientUnaryCall;
  Status(argument: _iofilter_v1_StatusRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_iofilter_v1_StatusResponse__Output>): grpc.ClientUnaryCall;
  Status(argument: _iofilter_v1_StatusRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_StatusResponse__Output>): grpc.ClientUnaryCall;
  Status(argument: _iofilter_v1_StatusRequest, callback: grpc.requestCallback<_iofilter_v1_StatusResponse__Output>): grpc.ClientUnaryCall;
  status(argument: _iofilter_v1_StatusRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_StatusResponse__Output>): grpc.ClientUnaryCall;
  status(argument: _iofilter_v1_StatusRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_iofilter_v1_StatusResponse__Output>): grpc.ClientUnaryCall;
  status(argument: _iofilter_v1_StatusRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_StatusResponse__Output>): grpc.ClientUnaryCall;
  status(argument: _iofilter_v1_StatusRequest, callback: grpc.requestCallback<_iofilter_v1_StatusResponse__Output>): grpc.ClientUnaryCall;
  
  Unwrap(argument: _iofilter_v1_UnwrapRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_UnwrapResponse__Output>): grpc.ClientUnaryCall;
  Unwrap(argument: _iofilter_v1_UnwrapRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_iofilter_v1_UnwrapResponse__Output>): grpc.ClientUnaryCall;
  Unwrap(argument: _iofilter_v1_UnwrapRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_UnwrapResponse__Output>): grpc.ClientUnaryCall;
  Unwrap(argument: _iofilter_v1_UnwrapRequest, callback: grpc.requestCallback<_iofilter_v1_UnwrapResponse__Output>): grpc.ClientUnaryCall;
  unwrap(argument: _iofilter_v1_UnwrapRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_UnwrapResponse__Output>): grpc.ClientUnaryCall;
  unwrap(argument: _iofilter_v1_UnwrapRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_iofilter_v1_UnwrapResponse__Output>): grpc.ClientUnaryCall;
  unwrap(argument: _iofilter_v1_UnwrapRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_UnwrapResponse__Output>): grpc.ClientUnaryCall;
  unwrap(argument: _iofilter_v1_UnwrapRequest, callback: grpc.requestCallback<_iofilter_v1_UnwrapResponse__Output>): grpc.ClientUnaryCall;
  
  Watch(argument: _iofilter_v1_WatchRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_iofilter_v1_WatchEvent__Output>;
  Watch(argument: _iofilter_v1_WatchRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_iofilter_v1_WatchEvent__Output>;
  watch(argument: _iofilter_v1_WatchRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_iofilter_v1_WatchEvent__Output>;
  watch(argument: _iofilter_v1_WatchRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_iofilter_v1_WatchEvent__Output>;
  
  Wrap(argument: _iofilter_v1_WrapRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_WrapResponse__Output>): grpc.ClientUnaryCall;
  Wrap(argument: _iofilter_v1_WrapRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_iofilter_v1_WrapResponse__Output>): grpc.ClientUnaryCall;
  Wrap(argument: _iofilter_v1_WrapRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_WrapResponse__Output>): grpc.ClientUnaryCall;
  Wrap(argument: _iofilter_v1_WrapRequest, callback: grpc.requestCallback<_iofilter_v1_WrapResponse__Output>): grpc.ClientUnaryCall;
  wrap(argument: _iofilter_v1_WrapRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_WrapResponse__Output>): grpc.ClientUnaryCall;
  wrap(argument: _iofilter_v1_WrapRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_iofilter_v1_WrapResponse__Output>): grpc.ClientUnaryCall;
  wrap(argument: _iofilter_v1_WrapRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_iofilter_v1_WrapResponse__Output>): grpc.ClientUnaryCall;
  wrap(argument: _iofilter_v1_WrapRequest, callback: grpc.requestCallback<_iofilter_v1_WrapResponse__Output>): grpc.ClientUnaryCall;
  
}

export interface IoFilterServiceHandlers extends grpc.UntypedServiceImplementation {
  Attach: grpc.handleUnaryCall<_iofilter_v1_AttachRequest__Output, _iofilter_v1_AttachResponse>;
  
  ClearFilters: grpc.handleUnaryCall<_iofilter_v1_ClearFiltersRequest__Output, _iofilter_v1_ClearFiltersResponse>;
  
  DeleteFilter: grpc.handleUnaryCall<_iofilter_v1_DeleteFilterRequest__Output, _iofilter_v1_DeleteFilterResponse>;
  
  Detach: grpc.handleUnaryCall<_iofilter_v1_DetachRequest__Output, _iofilter_v1_DetachResponse>;
  
  SetFilter: grpc.handleUnaryCall<_iofilter_v1_SetFilterRequest__Output, _iofilter_v1_SetFilterResponse>;
  
  Status: grpc.handleUnaryCall<_iofilter_v1_StatusRequest__Output, _iofilter_v1_StatusResponse>;
  
  Unwrap: grpc.handleUnaryCall<_iofilter_v1_UnwrapRequest__Output, _iofilter_v1_UnwrapResponse>;
  
  Watch: grpc.handleServerStreamingCall<_iofilter_v1_WatchRequest__Output, _iofilter_v1_WatchEvent>;
  
  Wrap: grpc.handleUnaryCall<_iofilter_v1_WrapRequest__Output, _iofilter_v1_WrapResponse>;
  
}

export interface IoFilterServiceDefinition extends grpc.ServiceDefinition {
  Attach: MethodDefinition<_iofilter_v1_AttachRequest, _iofilter_v1_AttachResponse, _iofilter_v1_AttachRequest__Output, _iofilter_v1_AttachResponse__Output>
  ClearFilters: MethodDefinition<_iofilter_v1_ClearFiltersRequest, _iofilter_v1_ClearFiltersResponse, _iofilter_v1_ClearFiltersRequest__Output, _iofilter_v1_ClearFiltersResponse__Output>
  DeleteFilter: MethodDefinition<_iofilter_v1_DeleteFilterRequest, _iofilter_v1_DeleteFilterResponse, _iofilter_v1_DeleteFilterRequest__Output, _iofilter_v1_DeleteFilterResponse__Output>
  Detach: MethodDefinition<_iofilter_v1_DetachRequest, _iofilter_v1_DetachResponse, _iofilter_v1_DetachRequest__Output, _iofilter_v1_DetachResponse__Output>
  SetFilter: MethodDefinition<_iofilter_v1_SetFilterRequest, _iofilter_v1_SetFilterResponse, _iofilter_v1_SetFilterRequest__Output, _iofilter_v1_SetFilterResponse__Output>
  Status: MethodDefinition<_iofilter_v1_StatusRequest, _iofilter_v1_StatusResponse, _iofilter_v1_StatusRequest__Output, _iofilter_v1_StatusResponse__Output>
  Unwrap: MethodDefinition<_iofilter_v1_UnwrapRequest, _iofilter_v1_UnwrapResponse, _iofilter_v1_UnwrapRequest__Output, _iofilter_v1_UnwrapResponse__Output>
  Watch: MethodDefinition<_iofilter_v1_WatchRequest, _iofilter_v1_WatchEvent, _iofilter_v1_WatchRequest__Output, _iofilter_v1_WatchEvent__Output>
  Wrap: MethodDefinition<_iofilter_v1_WrapRequest, _iofilter_v1_WrapResponse, _iofilter_v1_WrapRequest__Output, _iofilter_v1_WrapResponse__Output>
}
