// Original file: proto/iofilter/v1/iofilter.proto


export interface UnwrapRequest {
  'name'?: (string);
}

export interface UnwrapRequest__Output {
  'name': (string);
}
