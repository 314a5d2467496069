// Which medium a filter's disk had when the filter was set, and whether it still has
// it. From 5.15 the kernel says: the disk's diskseq, which every new medium behind a
// device number changes (loop attach, a replaced NVMe namespace), and which the
// program itself checks (bpf/iofilter.bpf.c), so only removal is left to the agent.
// Before 5.15 there is no such number: the agent fingerprints the disk (size, and a
// loop device's backing file) when it first sees the filter and removes the filter
// when the fingerprint changes, within one reap tick (1 s), not in the kernel.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as native from '../native';
import { diskSeqOf } from './devices';

interface Disk {
  major: number;
  minor: number;
}

/** A medium's identity as text ("diskseq 42", "size 2048, backing 8:1 ino 123 offset 0"); null: the disk is gone. */
export function mediumOf(disk: Disk, sysfs = '/sys'): string | null {
  const seq = diskSeqOf(disk, sysfs);
  if (seq === null) return null;
  if (seq) return `diskseq ${seq}`;
  const dir = path.join(sysfs, 'dev', 'block', `${disk.major}:${disk.minor}`);
  const read = (f: string) => {
    try {
      return fs.readFileSync(path.join(dir, f), 'utf8').trim();
    } catch {
      return '';
    }
  };
  let id = `size ${read('size')}`;
  const backing = read('loop/backing_file');
  if (backing) {
    let st = '';
    try {
      const s = fs.statSync(backing.replace(/ \(deleted\)$/, ''), { bigint: true });
      st = ` dev ${s.dev} ino ${s.ino}`;
    } catch {
      st = ' (unreadable)';
    }
    id += `, backing ${backing}${st} offset ${read('loop/offset')}`;
  }
  return id;
}

export interface Moved {
  filter: native.FilterInfo;
  was: string;
  now: string | null;
}

export class Media {
  /** Fingerprints of filters without a diskseq, by filter id, as first seen. */
  private readonly seen = new Map<number, string>();
  constructor(private readonly sysfs = '/sys') {}

  /** Records the medium of a filter just set (before 5.15, the agent's only record of it). */
  note(f: native.FilterInfo): void {
    if (f.diskseq) return;
    const cur = mediumOf(f.disk, this.sysfs);
    if (cur !== null) this.seen.set(f.id, cur);
  }

  /** The filters of `filters` whose disk has another medium than when they were set (or first seen). */
  moved(filters: native.FilterInfo[]): Moved[] {
    const out: Moved[] = [];
    const now = new Map<string, string | null>();
    const live = new Set<number>();
    for (const f of filters) {
      live.add(f.id);
      const key = `${f.disk.major}:${f.disk.minor}`;
      if (!now.has(key)) now.set(key, mediumOf(f.disk, this.sysfs));
      const cur = now.get(key)!;
      const was = f.diskseq ? `diskseq ${f.diskseq}` : this.seen.get(f.id);
      if (was === undefined) {
        if (cur !== null) this.seen.set(f.id, cur);
        continue;
      }
      if (cur !== was) out.push({ filter: f, was, now: cur });
    }
    for (const id of this.seen.keys()) if (!live.has(id)) this.seen.delete(id);
    return out;
  }
}
