// Original file: proto/iofilter/v1/iofilter.proto

export const FilterView = {
  FILTER_VIEW_UNSPECIFIED: 'FILTER_VIEW_UNSPECIFIED',
  FILTER_VIEW_BASIC: 'FILTER_VIEW_BASIC',
  FILTER_VIEW_FULL: 'FILTER_VIEW_FULL',
} as const;

export type FilterView =
  | 'FILTER_VIEW_UNSPECIFIED'
  | 0
  | 'FILTER_VIEW_BASIC'
  | 1
  | 'FILTER_VIEW_FULL'
  | 2

export type FilterView__Output = typeof FilterView[keyof typeof FilterView]
