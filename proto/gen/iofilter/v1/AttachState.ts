// Original file: proto/iofilter/v1/iofilter.proto

import type { Mode as _iofilter_v1_Mode, Mode__Output as _iofilter_v1_Mode__Output } from '../../iofilter/v1/Mode';
import type { SelfTest as _iofilter_v1_SelfTest, SelfTest__Output as _iofilter_v1_SelfTest__Output } from '../../iofilter/v1/SelfTest';
import type { ProgramStats as _iofilter_v1_ProgramStats, ProgramStats__Output as _iofilter_v1_ProgramStats__Output } from '../../iofilter/v1/ProgramStats';
import type { AttachPolicy as _iofilter_v1_AttachPolicy, AttachPolicy__Output as _iofilter_v1_AttachPolicy__Output } from '../../iofilter/v1/AttachPolicy';

export interface AttachState {
  'attached'?: (boolean);
  'mode'?: (_iofilter_v1_Mode);
  'pinDir'?: (string);
  'hook'?: (string);
  'progIds'?: (number)[];
  'linkIds'?: (number)[];
  'adopted'?: (boolean);
  'maxDisks'?: (number);
  'pinned'?: (boolean);
  'selfTest'?: (_iofilter_v1_SelfTest | null);
  'programs'?: (_iofilter_v1_ProgramStats)[];
  'policy'?: (_iofilter_v1_AttachPolicy);
}

export interface AttachState__Output {
  'attached': (boolean);
  'mode': (_iofilter_v1_Mode__Output);
  'pinDir': (string);
  'hook': (string);
  'progIds': (number)[];
  'linkIds': (number)[];
  'adopted': (boolean);
  'maxDisks': (number);
  'pinned': (boolean);
  'selfTest': (_iofilter_v1_SelfTest__Output | null);
  'programs': (_iofilter_v1_ProgramStats__Output)[];
  'policy': (_iofilter_v1_AttachPolicy__Output);
}
