// Original file: proto/iofilter/v1/iofilter.proto

export const CorruptDirection = {
  CORRUPT_DIRECTION_UNSPECIFIED: 'CORRUPT_DIRECTION_UNSPECIFIED',
  CORRUPT_DIRECTION_READ: 'CORRUPT_DIRECTION_READ',
  CORRUPT_DIRECTION_WRITE: 'CORRUPT_DIRECTION_WRITE',
} as const;

export type CorruptDirection =
  | 'CORRUPT_DIRECTION_UNSPECIFIED'
  | 0
  | 'CORRUPT_DIRECTION_READ'
  | 1
  | 'CORRUPT_DIRECTION_WRITE'
  | 2

export type CorruptDirection__Output = typeof CorruptDirection[keyof typeof CorruptDirection]
