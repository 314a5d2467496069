// Original file: proto/iofilter/v1/iofilter.proto


export interface DropWritesFault {
}

export interface DropWritesFault__Output {
}
