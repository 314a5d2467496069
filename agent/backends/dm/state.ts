// The dm backend's persisted state, one JSON file per faulted dm device (and one per
// wrapped device), under the state dir (default /var/lib/iofilter). Written BEFORE
// each table swap, atomically (temp file, fsync, rename, fsync of the directory), so a
// crash at any point leaves either the old record or the new one, and never loses the
// original table. The agent and the watchdog both read it; one of them at a time
// writes it (the state dir's owner lock, see lock.ts).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Op } from '../../../native';
import type { Fault } from '../../../proto/gen/iofilter/v1/Fault';

/** A deadline that survives clock steps: CLOCK_BOOTTIME within one boot; a new boot has no dm faults left. */
export interface Deadline {
  bootId: string;
  boottimeMs: number;
  realtimeMs: number; // for people reading the file; never compared
}

export interface DmFault {
  version: 1;
  id: number;
  name: string; // dm name
  devno: string; // MAJ:MIN of the dm device
  original: string; // `dmsetup table` before the fault, byte for byte
  faulted: string; // the table we load
  ranges: { start: string; end: string; ops: Op[] }[];
  whole: boolean;
  deadline: Deadline | null;
  createdUnixMs: number;
  /** What the segments do (absent in records of agents before fault kinds: error EIO). */
  fault?: Fault;
  /** Kernel events per second of its observe counter (count.ts); absent: the program's default. */
  eventsPerSecond?: number;
}

export interface Wrapped {
  version: 1;
  name: string; // as given to Wrap
  dmName: string; // iofilter-NAME
  below: string; // as given
  belowDev: string; // MAJ:MIN
  createdUnixMs: number;
}

export interface Clock {
  bootId(): string;
  boottimeMs(): number;
  realtimeMs(): number;
}

export const systemClock: Clock = {
  bootId: () => fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(),
  // /proc/uptime is CLOCK_BOOTTIME (10 ms resolution): counts suspend, never stepped
  boottimeMs: () => Math.round(Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000),
  realtimeMs: () => Date.now(),
};

export function deadlineIn(ms: number, clock: Clock): Deadline {
  return { bootId: clock.bootId(), boottimeMs: clock.boottimeMs() + ms, realtimeMs: clock.realtimeMs() + ms };
}

/** Ms left before the deadline (0: expired; a deadline from another boot has expired). */
export function remainingMs(d: Deadline, clock: Clock): number {
  if (d.bootId !== clock.bootId()) return 0;
  return Math.max(0, d.boottimeMs - clock.boottimeMs());
}

/** dm ids live at 2^31 and up: the bpf table's ids count from 1 per pin dir and would need 2^31 filters to get there. */
export const DM_ID_BASE = 0x8000_0000;

/** Writes `data` to `file` so that a crash leaves the old content or the new, never a mix. */
export function atomicWrite(file: string, data: string): void {
  const tmp = `${file}.tmp.${process.pid}`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  syncDir(path.dirname(file));
}

function syncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

const FAULT = /^fault-(.+)\.json$/;
const WRAP = /^wrap-(.+)\.json$/;

export class StateDir {
  constructor(readonly dir: string) {}

  ensure(): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  private read<T>(file: string): T {
    return JSON.parse(fs.readFileSync(path.join(this.dir, file), 'utf8')) as T;
  }

  private names(re: RegExp): string[] {
    if (!fs.existsSync(this.dir)) return [];
    return fs.readdirSync(this.dir).filter((f) => re.test(f)).sort();
  }

  faults(): DmFault[] {
    return this.names(FAULT).map((f) => this.read<DmFault>(f));
  }
  fault(name: string): DmFault | null {
    const f = `fault-${name}.json`;
    return fs.existsSync(path.join(this.dir, f)) ? this.read<DmFault>(f) : null;
  }
  putFault(f: DmFault): void {
    this.ensure();
    atomicWrite(path.join(this.dir, `fault-${f.name}.json`), JSON.stringify(f, null, 1) + '\n');
  }
  removeFault(name: string): void {
    fs.rmSync(path.join(this.dir, `fault-${name}.json`), { force: true });
    syncDir(this.dir);
  }

  /**
   * Records of another persisted backend: `<kind>-<key>.json` (kind: [a-z]+, not
   * "fault" or "wrap", which are dm's), written the same crash-safe way.
   */
  records<T>(kind: string): T[] {
    return this.names(new RegExp(`^${kind}-(.+)\\.json$`)).map((f) => this.read<T>(f));
  }
  putRecord(kind: string, key: string, rec: object): void {
    this.ensure();
    atomicWrite(path.join(this.dir, `${kind}-${key}.json`), JSON.stringify(rec, null, 1) + '\n');
  }
  removeRecord(kind: string, key: string): void {
    fs.rmSync(path.join(this.dir, `${kind}-${key}.json`), { force: true });
    syncDir(this.dir);
  }

  wrapped(): Wrapped[] {
    return this.names(WRAP).map((f) => this.read<Wrapped>(f));
  }
  putWrapped(w: Wrapped): void {
    this.ensure();
    atomicWrite(path.join(this.dir, `wrap-${w.name}.json`), JSON.stringify(w, null, 1) + '\n');
  }
  removeWrapped(name: string): void {
    fs.rmSync(path.join(this.dir, `wrap-${name}.json`), { force: true });
    syncDir(this.dir);
  }

  /** The next filter id of the persisted backends (persisted, so ids stay unique across restarts). */
  nextId(): number {
    this.ensure();
    const file = path.join(this.dir, 'next-id');
    const n = fs.existsSync(file) ? Number(fs.readFileSync(file, 'utf8')) : DM_ID_BASE;
    // every backend's records carry their filters' ids: at the top (dm), or per filter (blkinject's per-disk records)
    const ids = this.names(/\.json$/)
      .flatMap((f) => {
        const r = this.read<{ id?: unknown; filters?: { id?: unknown }[] }>(f);
        return [r.id, ...(Array.isArray(r.filters) ? r.filters.map((x) => x.id) : [])].map(Number);
      })
      .filter((x) => Number.isInteger(x));
    const used = Math.max(n, ...ids.map((x) => x + 1));
    const id = used >= 0xffff_ffff ? DM_ID_BASE : used;
    atomicWrite(file, `${id + 1}\n`);
    return id;
  }
}
