// The blkinject backend's persisted state: one record per disk (state dir
// `blkinject-<MAJ:MIN>.json`, written crash-safely by StateDir) holding every filter
// iofilter has on that disk, because the kernel's list is per disk and only `removeall`
// takes rules out. A record is written BEFORE each change of the kernel's list, with
// `prior` (the filters and list before the change) set: a crash in the middle leaves a
// kernel list that is a tail of the new list or of the prior one, which the next agent
// or watchdog recognises as its own and finishes.
import type { Op } from '../../../native';
import type { Fault } from '../../../proto/gen/iofilter/v1/Fault';
import type { Deadline, StateDir } from '../dm/state';

export const KIND = 'blkinject';

export interface BlkFilter {
  id: number;
  seq: number; // creation order on the disk: newer filters are listed (and tried) first
  devno: string; // the filtered device, MAJ:MIN (the disk or a partition)
  name: string; // its kernel name when set, e.g. loop1p2
  offset: string; // its first sector on the disk
  size: string;
  whole: boolean;
  ranges: { start: string; end: string; ops: Op[] }[]; // device coordinates
  status: string; // BLK_STS tag
  chance: number;
  deadline: Deadline | null;
  createdUnixMs: number;
  fault: Fault;
  rules: string[]; // its rules as the kernel lists them
}

export interface DiskRecord {
  version: 1;
  disk: string; // the disk's name in debugfs/block
  devno: string; // the disk's MAJ:MIN
  diskseq: string; // its medium when set ('0': the kernel has none)
  nextSeq: number;
  filters: BlkFilter[];
  /** Set while a change is written to the kernel: the filters and list before it. */
  prior: { filters: BlkFilter[]; rules: string[] } | null;
}

/** The list the kernel should show for these filters: newest first, each filter's rules in order. */
export function expectedList(filters: BlkFilter[]): string[] {
  return [...filters].sort((a, b) => b.seq - a.seq).flatMap((f) => f.rules);
}

/** Whether `live` is a tail of `list` (the empty list is a tail of every list). */
export function isTail(live: string[], list: string[]): boolean {
  const k = list.length - live.length;
  return k >= 0 && live.every((l, i) => l === list[k + i]);
}

export class DiskRecords {
  constructor(private readonly state: StateDir) {}

  all(): DiskRecord[] {
    return this.state.records<DiskRecord>(KIND);
  }
  get(devno: string): DiskRecord | null {
    return this.all().find((r) => r.devno === devno) ?? null;
  }
  put(r: DiskRecord): void {
    this.state.putRecord(KIND, r.devno, r);
  }
  remove(devno: string): void {
    this.state.removeRecord(KIND, devno);
  }
  filters(): (BlkFilter & { disk: string })[] {
    return this.all().flatMap((r) => r.filters.map((f) => ({ ...f, disk: r.disk })));
  }
}
