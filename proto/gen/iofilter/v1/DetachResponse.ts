// Original file: proto/iofilter/v1/iofilter.proto


export interface DetachResponse {
  'wasAttached'?: (boolean);
  'filtersRemoved'?: (number);
}

export interface DetachResponse__Output {
  'wasAttached': (boolean);
  'filtersRemoved': (number);
}
