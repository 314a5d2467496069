// Original file: proto/iofilter/v1/iofilter.proto

export const Outcome = {
  OUTCOME_UNSPECIFIED: 'OUTCOME_UNSPECIFIED',
  OUTCOME_FAILED: 'OUTCOME_FAILED',
  OUTCOME_WOULD_FAIL: 'OUTCOME_WOULD_FAIL',
  OUTCOME_SPARED: 'OUTCOME_SPARED',
} as const;

export type Outcome =
  | 'OUTCOME_UNSPECIFIED'
  | 0
  | 'OUTCOME_FAILED'
  | 1
  | 'OUTCOME_WOULD_FAIL'
  | 2
  | 'OUTCOME_SPARED'
  | 3

export type Outcome__Output = typeof Outcome[keyof typeof Outcome]
