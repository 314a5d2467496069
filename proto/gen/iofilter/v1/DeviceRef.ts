// Original file: proto/iofilter/v1/iofilter.proto

import type { Long } from '@grpc/proto-loader';

export interface DeviceRef {
  'major'?: (number);
  'minor'?: (number);
  'name'?: (string);
  'diskName'?: (string);
  'partition'?: (boolean);
  'sizeSectors'?: (number | string | Long);
  'startSector'?: (number | string | Long);
}

export interface DeviceRef__Output {
  'major': (number);
  'minor': (number);
  'name': (string);
  'diskName': (string);
  'partition': (boolean);
  'sizeSectors': (string);
  'startSector': (string);
}
