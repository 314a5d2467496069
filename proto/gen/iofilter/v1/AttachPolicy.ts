// Original file: proto/iofilter/v1/iofilter.proto

export const AttachPolicy = {
  ATTACH_POLICY_UNSPECIFIED: 'ATTACH_POLICY_UNSPECIFIED',
  ATTACH_POLICY_ALWAYS: 'ATTACH_POLICY_ALWAYS',
  ATTACH_POLICY_ON_DEMAND: 'ATTACH_POLICY_ON_DEMAND',
} as const;

export type AttachPolicy =
  | 'ATTACH_POLICY_UNSPECIFIED'
  | 0
  | 'ATTACH_POLICY_ALWAYS'
  | 1
  | 'ATTACH_POLICY_ON_DEMAND'
  | 2

export type AttachPolicy__Output = typeof AttachPolicy[keyof typeof AttachPolicy]
