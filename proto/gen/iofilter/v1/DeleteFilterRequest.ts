// Original file: proto/iofilter/v1/iofilter.proto


export interface DeleteFilterRequest {
  'device'?: (string);
}

export interface DeleteFilterRequest__Output {
  'device': (string);
}
