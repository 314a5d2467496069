// Original file: proto/iofilter/v1/iofilter.proto


export interface WrapRequest {
  'device'?: (string);
  'name'?: (string);
}

export interface WrapRequest__Output {
  'device': (string);
  'name': (string);
}
