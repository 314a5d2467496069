// Original file: proto/iofilter/v1/iofilter.proto


export interface UnwrapResponse {
  'existed'?: (boolean);
}

export interface UnwrapResponse__Output {
  'existed': (boolean);
}
