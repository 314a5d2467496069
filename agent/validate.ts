// Turns a SetFilter request into a native FilterSpec, or an INVALID_ARGUMENT that
// names the field and the value. Runs before anything reaches the kernel.
import type * as native from '../native';
import type { DeleteFilterRequest__Output } from '../proto/gen/iofilter/v1/DeleteFilterRequest';
import type { SetFilterRequest__Output } from '../proto/gen/iofilter/v1/SetFilterRequest';
import { opFromWire, opToWire } from '../proto/names';
import { PackedRangesError, unpackRanges } from '../proto/packed';
import type { CgroupQuery, ResolvedCgroup } from './cgroup';
import { describeFault } from '../proto/faults';
import { EIO, FaultSpec, faultToWire, impliedOps } from './faults';
import type { DeviceInfo } from './devices';
import { invalid, precondition } from './errors';

export interface Policy {
  maxRanges: number;
  ttl: { maxMs: number; defaultMs: number; allowNoTtl: boolean };
}

const U64_MAX = (1n << 64n) - 1n;

function toBig(v: unknown, field: string): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return BigInt(v);
  throw invalid(`${field}: ${JSON.stringify(v)} is not an integer`);
}

export function parseOps(ops: unknown, field: string): native.Op[] {
  if (!Array.isArray(ops) || ops.length === 0) throw invalid(`${field}: select at least one operation (read, write, flush, discard, write_zeroes)`);
  const out = new Set<native.Op>();
  for (const o of ops) {
    const op = opFromWire(o);
    if (!op) throw invalid(`${field}: unknown op ${JSON.stringify(o)} (OP_READ, OP_WRITE, OP_FLUSH, OP_DISCARD, OP_WRITE_ZEROES)`);
    out.add(op);
  }
  return [...out];
}

/** The TTL the kernel will enforce, in ms (0: none), per the agent's policy. */
export function effectiveTtl(ttlMs: unknown, policy: Policy['ttl']): number {
  const ttl = toBig(ttlMs ?? 0, 'ttl_ms');
  if (ttl < 0n) throw invalid(`ttl_ms: ${ttl} is negative`);
  if (ttl > BigInt(policy.maxMs)) throw invalid(`ttl_ms: ${ttl} exceeds this agent's maximum TTL of ${policy.maxMs} ms`);
  if (ttl === 0n) return policy.allowNoTtl ? 0 : policy.defaultMs;
  return Number(ttl);
}

/**
 * A range's ops under a fault kind that implies them (delay, drop-writes, corrupt,
 * throttle): none given means the kind's own; given, they must be exactly those.
 */
function kindOps(ops: unknown, field: string, fault: FaultSpec): native.Op[] {
  const implied = impliedOps(fault);
  if (!implied) return parseOps(ops, field);
  if (!Array.isArray(ops) || !ops.length) return implied;
  const given = parseOps(ops, field);
  const same = given.length === implied.length && implied.every((o) => given.includes(o));
  if (!same) throw invalid(`${field}: ${given.join(',')}: a ${describeFault(faultToWire(fault))} fault acts on ${implied.join(',')} (leave the ops out)`);
  return implied;
}

/**
 * The request's ranges, from `ranges` or from `packed_ranges` (never both), each checked
 * the same way: start <= end, within the device, at most `maxRanges`.
 */
function requestRanges(req: SetFilterRequest__Output, dev: DeviceInfo, maxRanges: number, fault: FaultSpec): native.FilterSpec['ranges'] {
  const wire = req.ranges ?? [];
  const packed = req.packedRanges;
  const last = dev.size - 1n;
  const check = (start: bigint, end: bigint, at: string) => {
    if (start < 0n || end < 0n || end > U64_MAX) throw invalid(`${at}: sectors must be in 0..2^64-1`);
    if (start > end) throw invalid(`${at}: start ${start} > end ${end}`);
    if (end > last) throw invalid(`${at}: end ${end} is beyond the last sector ${last} of ${dev.name} (${dev.major}:${dev.minor})`);
  };
  if (!packed?.length) {
    if (wire.length > maxRanges) throw invalid(`ranges: ${wire.length} given, limit ${maxRanges} per disk`);
    return wire.map((r, i) => {
      const start = toBig(r.start, `ranges[${i}].start`);
      const end = toBig(r.end, `ranges[${i}].end`);
      check(start, end, `ranges[${i}]`);
      return { start, end, ops: kindOps(r.ops, `ranges[${i}].ops`, fault) };
    });
  }
  if (wire.length) throw invalid(`ranges and packed_ranges: give the ranges in one of them, not both (${wire.length} in ranges, ${packed.length} bytes in packed_ranges)`);
  let given: native.FilterSpec['ranges'];
  try {
    given = unpackRanges(packed, maxRanges);
  } catch (e) {
    if (e instanceof PackedRangesError) throw invalid(e.message);
    throw e;
  }
  given.forEach((r, i) => check(r.start, r.end, `packed_ranges[${i}]`));
  return given.map((r, i) => ({ ...r, ops: kindOps(r.ops.map(opToWire), `packed_ranges[${i}].ops`, fault) }));
}

/** `cgroup`: the scope the request named, already resolved (see scopeQuery). */
export function toFilterSpec(req: SetFilterRequest__Output, dev: DeviceInfo, policy: Policy, cgroup?: ResolvedCgroup | null, fault: FaultSpec = EIO): native.FilterSpec {
  const ranges = requestRanges(req, dev, policy.maxRanges, fault);
  const wholeOps = req.wholeDeviceOps ?? [];
  if (ranges.length && wholeOps.length) throw invalid('whole_device_ops: give either ranges (each with its ops) or whole_device_ops, not both');
  const spec: native.FilterSpec = {
    device: { major: dev.major, minor: dev.minor },
    disk: { major: dev.disk.major, minor: dev.disk.minor },
    offset: dev.start,
    size: dev.size,
    ...(dev.diskseq && { diskseq: dev.diskseq }),
    ranges,
    ttlMs: effectiveTtl(req.ttlMs, policy.ttl),
  };
  if (!ranges.length) spec.wholeOps = kindOps(wholeOps, 'whole_device_ops', fault);
  if (req.probability !== undefined && req.probability !== null) {
    const p = Number(req.probability);
    if (!(p > 0 && p <= 1)) throw invalid(`probability: ${req.probability} must be in (0, 1]`);
    if (p < 1) spec.probability = p;
  }
  const maxFailures = toBig(req.maxFailures ?? '0', 'max_failures');
  if (maxFailures < 0n || maxFailures > U64_MAX) throw invalid(`max_failures: ${maxFailures} is out of range`);
  if (maxFailures > 0n) spec.maxFailures = maxFailures;
  if (req.eventsPerSecond !== undefined && req.eventsPerSecond !== null) {
    const eps = Number(req.eventsPerSecond);
    if (!Number.isInteger(eps) || eps < 0 || eps > 1_000_000) throw invalid(`events_per_second: ${req.eventsPerSecond} must be 0..1000000`);
    spec.eventsPerSecond = eps;
  }
  if (req.eventsSpared) spec.eventsSpared = true;
  if (cgroup) {
    spec.cgroup = { id: cgroup.id, level: cgroup.level };
    spec.meta = { cgroupPath: cgroup.path, ...(cgroup.fromPid && { fromPid: cgroup.fromPid }) };
  }
  return spec;
}

const PID_MAX_LIMIT = 4_194_304; // the kernel's largest pid_max

/** The cgroup scope named by cgroup_path, cgroup_id or pid (at most one), or null for none. */
export function scopeQuery(r: { cgroupPath?: string; cgroupId?: unknown; pid?: unknown }): CgroupQuery | null {
  const id = toBig(r.cgroupId ?? '0', 'cgroup_id');
  const pid = toBig(r.pid ?? 0, 'pid');
  const given = [r.cgroupPath && 'cgroup_path', id !== 0n && 'cgroup_id', pid !== 0n && 'pid'].filter(Boolean);
  if (given.length > 1) throw invalid(`${given.join(', ')}: give at most one cgroup scope (cgroup_path, cgroup_id or pid)`);
  if (id < 0n || id > U64_MAX) throw invalid(`cgroup_id: ${id} is out of range`);
  if (pid < 0n || pid > BigInt(PID_MAX_LIMIT)) throw invalid(`pid: ${pid} is out of range (1..${PID_MAX_LIMIT})`);
  if (r.cgroupPath) return { path: r.cgroupPath };
  if (id) return { id };
  if (pid) return { pid: Number(pid) };
  return null;
}

/** What a DeleteFilter request names: a filter id, or a device with a scope, no scope, or all scopes. */
export type DeleteTarget = { id: number } | { device: string; scope: CgroupQuery | null; allScopes: boolean };

export function deleteTarget(req: DeleteFilterRequest__Output): DeleteTarget {
  const scope = scopeQuery(req);
  if (req.id) {
    if (req.device || scope || req.allScopes) throw invalid(`id: ${req.id}: give the filter id alone, without device, scope or all_scopes`);
    return { id: req.id };
  }
  if (!req.device) throw invalid('device is empty: give MAJ:MIN (e.g. 259:2) or a /dev path, or a filter id');
  if (scope && req.allScopes) throw invalid('all_scopes: give either a cgroup scope or all_scopes, not both');
  return { device: req.device, scope, allScopes: !!req.allScopes };
}

/**
 * A delete that names a device and no scope removes only the device's unscoped filter.
 * If cgroup-scoped filters are on it too, such a delete would leave faults in force while
 * its caller believes the device clean ("no filter on DEV"), so it is refused before
 * anything changes, naming each scoped filter and the request that removes it.
 */
export function refuseIfScoped(named: string, device: native.Device, filters: native.FilterInfo[]): void {
  const on = filters.filter((f) => f.device.major === device.major && f.device.minor === device.minor);
  const scoped = on.filter((f) => f.cgroup);
  if (!scoped.length) return;
  const each = scoped.map((f) => {
    const p = f.meta.cgroupPath;
    return `filter ${f.id} for ${p ? `cgroup ${p}` : `cgroup id ${f.cgroup!.id}`} (delete it with ${p ? `--cgroup ${p}` : `--cgroup-id ${f.cgroup!.id}`} or --id ${f.id})`;
  });
  const plain = on.find((f) => !f.cgroup);
  throw precondition(
    `${named} has ${scoped.length === 1 ? 'a cgroup-scoped filter' : `${scoped.length} cgroup-scoped filters`} that a delete without a scope would leave in force; nothing was deleted: ` +
      `${each.join('; ')}. --all-scopes deletes every filter on ${named}` +
      (plain ? `; --id ${plain.id} deletes only its unscoped filter` : ''),
  );
}
