// Original file: proto/iofilter/v1/iofilter.proto


export interface DmFilter {
  'name'?: (string);
  'originalTable'?: (string);
  'table'?: (string);
}

export interface DmFilter__Output {
  'name': (string);
  'originalTable': (string);
  'table': (string);
}
