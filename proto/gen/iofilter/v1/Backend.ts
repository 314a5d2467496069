// Original file: proto/iofilter/v1/iofilter.proto

export const Backend = {
  BACKEND_UNSPECIFIED: 'BACKEND_UNSPECIFIED',
  BACKEND_AUTO: 'BACKEND_AUTO',
  BACKEND_BPF: 'BACKEND_BPF',
  BACKEND_DM: 'BACKEND_DM',
  BACKEND_BLKINJECT: 'BACKEND_BLKINJECT',
  BACKEND_THROTTLE: 'BACKEND_THROTTLE',
} as const;

export type Backend =
  | 'BACKEND_UNSPECIFIED'
  | 0
  | 'BACKEND_AUTO'
  | 1
  | 'BACKEND_BPF'
  | 2
  | 'BACKEND_DM'
  | 3
  | 'BACKEND_BLKINJECT'
  | 4
  | 'BACKEND_THROTTLE'
  | 5

export type Backend__Output = typeof Backend[keyof typeof Backend]
