// Original file: proto/iofilter/v1/iofilter.proto


export interface DetachRequest {
}

export interface DetachRequest__Output {
}
