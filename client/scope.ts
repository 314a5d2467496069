// Cgroup scopes in iofilterctl: the --cgroup / --cgroup-id / --pid flags of `set` and
// `delete` (and delete's --all-scopes and --id) - or a plan's cgroup / cgroupId / pid -
// turned into request fields, and how a filter's target and scope and a delete's target
// read. Usage errors are thrown before any call.
import type { Command } from 'commander';
import type { CgroupRef__Output } from '../proto/gen/iofilter/v1/CgroupRef';
import type { DeleteFilterRequest } from '../proto/gen/iofilter/v1/DeleteFilterRequest';
import type { DeleteFilterResponse__Output } from '../proto/gen/iofilter/v1/DeleteFilterResponse';
import { checkDevice, parseCount } from './args';
import { UsageError } from './errors';

export interface ScopeFlags {
  cgroup?: string;
  cgroupId?: string;
  pid?: string;
}

const PID_MAX_LIMIT = 4_194_304;
const U32_MAX = 4_294_967_295;

export function addScopeOptions(cmd: Command): Command {
  return cmd
    .option('--cgroup <path>', "only I/O of this cgroup v2 or its descendants: a path on the agent's host, under its cgroup2 mount or relative to it (e.g. /system.slice/db.service)")
    .option('--cgroup-id <n>', 'the same, by cgroup id (the inode number of its directory)')
    .option('--pid <pid>', "the same, for the cgroup that process PID is in now (resolved by the agent, in its pid namespace)");
}

/** How a person spells the scope fields, for messages: the flags, or a plan's keys. */
export type ScopeNames = Record<keyof ScopeFlags, string>;
export const SCOPE_FLAGS: ScopeNames = { cgroup: '--cgroup', cgroupId: '--cgroup-id', pid: '--pid' };

/** The scope fields of a request; at most one of the three. */
export function scopeFields(o: ScopeFlags, n: ScopeNames = SCOPE_FLAGS): Pick<DeleteFilterRequest, 'cgroupPath' | 'cgroupId' | 'pid'> {
  const given = (['cgroup', 'cgroupId', 'pid'] as const).filter((k) => o[k] !== undefined).map((k) => n[k]);
  if (given.length > 1) throw new UsageError(`give at most one of ${n.cgroup}, ${n.cgroupId} and ${n.pid} (got ${given.join(', ')})`);
  if (o.cgroup !== undefined) {
    if (!o.cgroup.trim()) throw new UsageError(`${n.cgroup}: empty path`);
    return { cgroupPath: o.cgroup };
  }
  if (o.cgroupId !== undefined) return { cgroupId: parseCount(o.cgroupId, n.cgroupId, 1) };
  if (o.pid !== undefined) {
    const pid = parseCount(o.pid, n.pid, 1);
    if (Number(pid) > PID_MAX_LIMIT) throw new UsageError(`bad ${n.pid} "${o.pid}": must be at most ${PID_MAX_LIMIT}`);
    return { pid: Number(pid) };
  }
  return {};
}

type Scoped = Pick<DeleteFilterRequest, 'cgroupPath' | 'cgroupId' | 'pid'>;

/** "cgroup /x", "cgroup id 4", "the cgroup of pid 7": a scope as it was asked for; null for none. */
export function scopeText(r: Scoped): string | null {
  if (r.cgroupPath) return `cgroup ${r.cgroupPath}`;
  if (r.cgroupId && String(r.cgroupId) !== '0') return `cgroup id ${r.cgroupId}`;
  if (r.pid) return `the cgroup of pid ${r.pid}`;
  return null;
}

/** "/var/lib/db/x (cgroup /system.slice/db.service)", "7:0": a SetFilter's target and scope as it was asked for. */
export function targetText(r: Scoped & { device?: string; file?: string }): string {
  const s = scopeText(r);
  return `${r.file || r.device}${s ? ` (${s})` : ''}`;
}

/** Equal for two requests that name the same target and scope the same way (the agent keeps one filter per device and scope). */
export function targetKey(r: Scoped & { device?: string; file?: string }): string {
  return JSON.stringify([r.file ? 'file' : 'device', r.file || r.device, scopeText(r)]);
}

/** `delete [DEV] [scope | --all-scopes] | delete --id N`: the request and how its target reads. */
export function deleteRequest(dev: string | undefined, o: ScopeFlags & { allScopes?: boolean; id?: string }): { req: DeleteFilterRequest; what: string } {
  const scope = scopeFields(o);
  const scoped = Object.keys(scope).length > 0;
  if (o.id !== undefined) {
    if (dev !== undefined || scoped || o.allScopes) throw new UsageError('delete --id N takes no DEV, scope or --all-scopes');
    const id = parseCount(o.id, '--id', 1);
    if (Number(id) > U32_MAX) throw new UsageError(`bad --id "${o.id}": must be at most ${U32_MAX}`);
    return { req: { id: Number(id) }, what: `with id ${id}` };
  }
  if (dev === undefined) throw new UsageError('delete: give DEV (with an optional --cgroup, --cgroup-id, --pid or --all-scopes), or --id N');
  checkDevice(dev);
  if (scoped && o.allScopes) throw new UsageError('delete: give either a scope (--cgroup, --cgroup-id, --pid) or --all-scopes, not both');
  const s = scopeText(scope);
  const what = s ? ` for ${s}` : o.allScopes ? ' (all scopes)' : '';
  return { req: { device: dev, ...scope, ...(o.allScopes && { allScopes: true }) }, what: `on ${dev}${what}` };
}

/** "deleted filter on 7:0 for cgroup /x", "deleted 3 filters on 7:0 (all scopes)", "no filter with id 4". */
export function deletedText(r: DeleteFilterResponse__Output, what: string): string {
  const n = r.removed || (r.existed ? 1 : 0); // agents before cgroup scopes send only `existed`
  return n ? `deleted ${n === 1 ? 'filter' : `${n} filters`} ${what}` : `no filter ${what}`;
}

/** "/system.slice/db.service (id 1234, from pid 4321)"; null for a filter on every cgroup. */
export function cgroupText(c?: CgroupRef__Output | null): string | null {
  if (!c) return null;
  return `${c.path || '?'} (id ${c.id}${c.fromPid ? `, from pid ${c.fromPid}` : ''})`;
}
