// Original file: proto/iofilter/v1/iofilter.proto


export interface KernelFeatures {
  'fetchAtomics'?: (boolean);
  'pinnableKprobe'?: (boolean);
  'recursionMisses'?: (boolean);
  'gracePeriod'?: (string);
  'cgroups'?: (boolean);
  'notes'?: (string)[];
}

export interface KernelFeatures__Output {
  'fetchAtomics': (boolean);
  'pinnableKprobe': (boolean);
  'recursionMisses': (boolean);
  'gracePeriod': (string);
  'cgroups': (boolean);
  'notes': (string)[];
}
