// Original file: proto/iofilter/v1/iofilter.proto


export interface ClearFiltersResponse {
  'removed'?: (number);
}

export interface ClearFiltersResponse__Output {
  'removed': (number);
}
