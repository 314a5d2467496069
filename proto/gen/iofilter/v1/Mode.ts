// Original file: proto/iofilter/v1/iofilter.proto

export const Mode = {
  MODE_UNSPECIFIED: 'MODE_UNSPECIFIED',
  MODE_AUTO: 'MODE_AUTO',
  MODE_FMOD_RET: 'MODE_FMOD_RET',
  MODE_KPROBE: 'MODE_KPROBE',
  MODE_OBSERVE: 'MODE_OBSERVE',
} as const;

export type Mode =
  | 'MODE_UNSPECIFIED'
  | 0
  | 'MODE_AUTO'
  | 1
  | 'MODE_FMOD_RET'
  | 2
  | 'MODE_KPROBE'
  | 3
  | 'MODE_OBSERVE'
  | 4

export type Mode__Output = typeof Mode[keyof typeof Mode]
