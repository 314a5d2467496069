// `iofilterctl wrap DEV --name NAME`: /dev/mapper/iofilter-NAME, a dm-linear
// pass-through over the whole of DEV, so the dm backend can fault a raw disk or
// partition on a stock kernel. Refused while DEV is mounted, held (a dm/md device on
// it, a partition of it in use) or active swap; unwrap is refused while the wrapped
// device is open or faulted. The record is persisted before the device is created.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { WrappedDevice } from '../../proto/gen/iofilter/v1/WrappedDevice';
import { resolveDevice } from '../devices';
import { invalid, precondition } from '../errors';
import { activeSwaps, mounts } from '../protect';
import { deviceRef } from '../wire';
import type { Dmsetup } from './dm/dmsetup';
import type { StateDir, Wrapped } from './dm/state';

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** Why `devno` (and its partitions) cannot be wrapped now, or null. */
export function inUse(devno: string, sysfs = '/sys', mountinfo = '/proc/self/mountinfo', swaps = '/proc/swaps'): string | null {
  const dir = fs.realpathSync(path.join(sysfs, 'dev', 'block', devno));
  const parts = fs.readdirSync(dir).filter((p) => fs.existsSync(path.join(dir, p, 'partition')));
  const all = [dir, ...parts.map((p) => path.join(dir, p))];
  const nums = new Map(all.map((d) => [fs.readFileSync(path.join(d, 'dev'), 'utf8').trim(), path.basename(d)]));
  for (const m of mounts(mountinfo)) if (nums.has(m.dev)) return `${nums.get(m.dev)} is mounted at ${m.mountPoint} (${m.fsType})`;
  for (const d of all) {
    const holders = fs.existsSync(path.join(d, 'holders')) ? fs.readdirSync(path.join(d, 'holders')) : [];
    if (holders.length) return `${path.basename(d)} is held by ${holders.join(', ')}`;
  }
  for (const sw of activeSwaps(swaps)) if (nums.has(sw.dev)) return `${nums.get(sw.dev)} is active swap (${sw.file})`;
  return null;
}

export class Wrapper {
  constructor(
    private readonly dm: Dmsetup,
    private readonly state: StateDir,
    private readonly sysfs = '/sys',
  ) {}

  async wrap(device: string, name: string): Promise<WrappedDevice> {
    if (!NAME.test(name ?? '')) throw invalid(`name: ${JSON.stringify(name)} must be 1-64 of A-Z a-z 0-9 _ . -`);
    if (!device) throw invalid('device is empty: give MAJ:MIN or a /dev path');
    const dev = resolveDevice(device, this.sysfs);
    if (dev.size === 0n) throw precondition(`${dev.name} has no sectors`);
    const dmName = `iofilter-${name}`;
    if (this.state.wrapped().some((w) => w.name === name)) throw precondition(`${dmName} is already wrapped (unwrap it first)`);
    if (await this.dm.info(dmName).then(() => true, () => false)) throw precondition(`a dm device named ${dmName} already exists`);
    const busy = inUse(`${dev.major}:${dev.minor}`, this.sysfs);
    if (busy) throw precondition(`cannot wrap ${dev.name}: ${busy}; wrap a device before making a filesystem on it, then use /dev/mapper/${dmName}`);
    const w: Wrapped = { version: 1, name, dmName, below: device, belowDev: `${dev.major}:${dev.minor}`, createdUnixMs: Date.now() };
    this.state.putWrapped(w);
    try {
      await this.dm.create(dmName, `0 ${dev.size} linear ${dev.major}:${dev.minor} 0\n`);
    } catch (e) {
      this.state.removeWrapped(name);
      throw precondition(`creating ${dmName} failed, nothing changed: ${(e as Error).message}`);
    }
    return this.toWire(w);
  }

  async unwrap(name: string, faulted: (devno: string) => boolean): Promise<boolean> {
    const w = this.state.wrapped().find((x) => x.name === name);
    if (!w) {
      if (!NAME.test(name ?? '')) throw invalid(`name: ${JSON.stringify(name)} must be 1-64 of A-Z a-z 0-9 _ . -`);
      return false;
    }
    const info = await this.dm.info(w.dmName).catch(() => null);
    if (info) {
      if (faulted(info.devno)) throw precondition(`${w.dmName} has a filter in force: delete it first`);
      if (info.open > 0) throw precondition(`${w.dmName} is in use (open count ${info.open}): unmount or close it first`);
      await this.dm.remove(w.dmName);
    }
    this.state.removeWrapped(name);
    return true;
  }

  list(): WrappedDevice[] {
    return this.state.wrapped().map((w) => this.toWire(w));
  }

  private toWire(w: Wrapped): WrappedDevice {
    let device;
    try {
      device = deviceRef(resolveDevice(`/dev/mapper/${w.dmName}`, this.sysfs));
    } catch (e) {
      if (!(e instanceof Error) || (e as { code?: unknown }).code === undefined) throw e;
      device = undefined; // not there (yet): listed without numbers
    }
    return { name: w.name, dmName: w.dmName, path: `/dev/mapper/${w.dmName}`, device, below: w.below, belowDev: w.belowDev, createdUnixMs: String(w.createdUnixMs) };
  }
}
