// Original file: proto/iofilter/v1/iofilter.proto

import type { IoEvent as _iofilter_v1_IoEvent, IoEvent__Output as _iofilter_v1_IoEvent__Output } from '../../iofilter/v1/IoEvent';
import type { Lost as _iofilter_v1_Lost, Lost__Output as _iofilter_v1_Lost__Output } from '../../iofilter/v1/Lost';

export interface WatchEvent {
  'io'?: (_iofilter_v1_IoEvent | null);
  'lost'?: (_iofilter_v1_Lost | null);
  'kind'?: "io"|"lost";
}

export interface WatchEvent__Output {
  'io'?: (_iofilter_v1_IoEvent__Output | null);
  'lost'?: (_iofilter_v1_Lost__Output | null);
  'kind'?: "io"|"lost";
}
