// Original file: proto/iofilter/v1/iofilter.proto

import type { Filter as _iofilter_v1_Filter, Filter__Output as _iofilter_v1_Filter__Output } from '../../iofilter/v1/Filter';

export interface SetFilterResponse {
  'filter'?: (_iofilter_v1_Filter | null);
  'warnings'?: (string)[];
}

export interface SetFilterResponse__Output {
  'filter': (_iofilter_v1_Filter__Output | null);
  'warnings': (string)[];
}
