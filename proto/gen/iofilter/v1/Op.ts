// Original file: proto/iofilter/v1/iofilter.proto

export const Op = {
  OP_UNSPECIFIED: 'OP_UNSPECIFIED',
  OP_READ: 'OP_READ',
  OP_WRITE: 'OP_WRITE',
  OP_FLUSH: 'OP_FLUSH',
  OP_DISCARD: 'OP_DISCARD',
  OP_WRITE_ZEROES: 'OP_WRITE_ZEROES',
} as const;

export type Op =
  | 'OP_UNSPECIFIED'
  | 0
  | 'OP_READ'
  | 1
  | 'OP_WRITE'
  | 2
  | 'OP_FLUSH'
  | 3
  | 'OP_DISCARD'
  | 4
  | 'OP_WRITE_ZEROES'
  | 5

export type Op__Output = typeof Op[keyof typeof Op]
