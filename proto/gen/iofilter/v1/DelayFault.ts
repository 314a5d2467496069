// Original file: proto/iofilter/v1/iofilter.proto


export interface DelayFault {
  'readMs'?: (number);
  'writeMs'?: (number);
  'flushMs'?: (number);
}

export interface DelayFault__Output {
  'readMs': (number);
  'writeMs': (number);
  'flushMs': (number);
}
