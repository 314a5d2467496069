// An in-memory device-mapper behind the dmsetup executor: live and inactive tables,
// suspend state and open counts per name, with failures to inject (a load the kernel
// rejects, a suspend that hangs, a crash after the state is written), and a fake sysfs
// tree with the dm devices in it. For the dm backend's unit tests.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { DmExec } from '../../agent/backends/dm/dmsetup';
import { DmsetupError } from '../../agent/backends/dm/dmsetup';

export interface FakeDev {
  live: string;
  inactive: string | null;
  suspended: boolean;
  open: number;
  minor: number;
}

export class FakeDm {
  devs = new Map<string, FakeDev>();
  calls: string[][] = [];
  /** Called with each argv before it runs (tests look at the state dir at that moment). */
  beforeCall?: (args: string[]) => void;
  /** Throw on the next call whose argv starts with this verb. */
  failNext: Partial<Record<string, DmsetupError>> = {};
  readonly sysfs = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-dm-sysfs-'));
  readonly devDir = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-dm-dev-'));

  constructor() {
    fs.mkdirSync(path.join(this.sysfs, 'class', 'misc', 'device-mapper'), { recursive: true });
    fs.mkdirSync(path.join(this.sysfs, 'dev', 'block'), { recursive: true });
    fs.mkdirSync(path.join(this.devDir, 'mapper'));
    fs.writeFileSync(path.join(this.devDir, 'mapper', 'control'), '');
  }

  /** A dm device `name` with `table` live, listed in the fake sysfs as 253:minor. */
  add(name: string, table: string, minor = this.devs.size): void {
    this.devs.set(name, { live: table, inactive: null, suspended: false, open: 0, minor });
    const dir = path.join(this.sysfs, 'devices', 'virtual', 'block', `dm-${minor}`);
    fs.mkdirSync(path.join(dir, 'dm'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'slaves', 'loop0'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'dev'), `253:${minor}\n`);
    const size = table.trim().split('\n').reduce((n, l) => n + Number(l.split(' ')[1]), 0);
    fs.writeFileSync(path.join(dir, 'size'), `${size}\n`);
    fs.writeFileSync(path.join(dir, 'dm', 'name'), `${name}\n`);
    fs.symlinkSync(dir, path.join(this.sysfs, 'dev', 'block', `253:${minor}`));
  }

  private dev(name: string): FakeDev {
    const d = this.devs.get(name);
    if (!d) throw new DmsetupError(`dmsetup: Device ${name} not found`);
    return d;
  }

  exec: DmExec = async (args, { input }) => {
    this.calls.push(args);
    this.beforeCall?.(args);
    const fail = this.failNext[args[0]];
    if (fail) {
      delete this.failNext[args[0]];
      throw fail;
    }
    const name = args[args.length - 1];
    switch (args[0]) {
      case 'targets':
        return { stdout: 'flakey           v1.5.0\nerror            v1.6.0\nlinear           v1.4.0\n', stderr: '' };
      case 'table': {
        const d = this.dev(name);
        return { stdout: args[1] === '--inactive' ? (d.inactive ?? '') : d.live, stderr: '' };
      }
      case 'load':
        if (/bogus/.test(input ?? '')) throw new DmsetupError('device-mapper: reload ioctl failed: Invalid argument');
        this.dev(name).inactive = input!;
        break;
      case 'suspend':
        this.dev(name).suspended = true;
        break;
      case 'resume': {
        const d = this.dev(name);
        if (d.inactive !== null) d.live = d.inactive;
        d.inactive = null;
        d.suspended = false;
        break;
      }
      case 'clear':
        this.dev(name).inactive = null;
        break;
      case 'info': {
        const d = this.dev(name);
        return { stdout: `${d.open};L-${d.suspended ? 's' : '-'}w;253;${d.minor}\n`, stderr: '' };
      }
      case 'create':
        this.add(name, input!);
        break;
      case 'remove':
        this.devs.delete(name);
        break;
      default:
        throw new DmsetupError(`fake dmsetup: ${args.join(' ')} not modelled`);
    }
    return { stdout: '', stderr: '' };
  };
}
