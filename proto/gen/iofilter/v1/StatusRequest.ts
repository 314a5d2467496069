// Original file: proto/iofilter/v1/iofilter.proto


export interface StatusRequest {
}

export interface StatusRequest__Output {
}
