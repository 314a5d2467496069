// Original file: proto/iofilter/v1/iofilter.proto

import type { FilterView as _iofilter_v1_FilterView, FilterView__Output as _iofilter_v1_FilterView__Output } from '../../iofilter/v1/FilterView';

export interface StatusRequest {
  'view'?: (_iofilter_v1_FilterView);
}

export interface StatusRequest__Output {
  'view': (_iofilter_v1_FilterView__Output);
}
