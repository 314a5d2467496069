// Original file: proto/iofilter/v1/iofilter.proto


export interface ClearFiltersRequest {
}

export interface ClearFiltersRequest__Output {
}
