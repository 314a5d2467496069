// What an experiment run has put on one host, and the deletes that remove exactly that
// at cleanup, scope included. An answered SetFilter says where its filter is: the device
// by number and the cgroup id the agent resolved the scope to; the cleanup deletes by
// those. A call that got no answer may still have landed: its filter is found again from
// what the request named (see unanswered()).
import type { DeleteFilterRequest } from '../proto/gen/iofilter/v1/DeleteFilterRequest';
import type { Filter__Output } from '../proto/gen/iofilter/v1/Filter';
import type { SetFilterRequest } from '../proto/gen/iofilter/v1/SetFilterRequest';
import { compactRanges, type IoFilterClient } from './client';
import { classify } from './fleet';
import { scopeText, targetKey, targetText } from './scope';

/** One delete of the cleanup (or one filter it found nothing of), as its event carries it. */
export interface Deleted {
  /** What the plan named, e.g. "/var/lib/db/x (cgroup /system.slice/db.service)"; a list when several name one filter. */
  filter: string;
  /** The device the delete named: MAJ:MIN as an agent resolved it, or the plan's own. Absent: nothing to delete was found. */
  device?: string;
  /** The scope the delete named, e.g. "cgroup id 1234"; absent: the device's unscoped filter. */
  scope?: string;
  existed: boolean;
}

/** "deleted filter on 7:1, cgroup id 1234: /var/lib/db/x (cgroup /system.slice/db.service)". */
export function deletedLine(d: Deleted): string {
  if (d.device === undefined) return `no filter left: ${d.filter} (none on this host)`;
  return `${d.existed ? 'deleted filter' : 'no filter left'} on ${d.device}${d.scope ? `, ${d.scope}` : ''}: ${d.filter}`;
}

interface Placed {
  /** The plan's request (its target and scope are what matter here). */
  req: SetFilterRequest;
  text: string;
  /** Where answered calls put the filter: the deletes that remove it, by key. */
  at: Map<string, DeleteFilterRequest>;
  /** The id the last answered call gave an unscoped filter, by key (see delete()). */
  ids: Map<string, { id: number; seq: number }>;
  /** Calls that got no answer (or have none yet): the filter may be in force where they named. */
  unsure: number;
}

const deleteKey = (d: DeleteFilterRequest) => JSON.stringify([d.device, d.cgroupPath ?? '', String(d.cgroupId ?? '')]);
const numbers = (f: Filter__Output) => `${f.device!.major}:${f.device!.minor}`;

/**
 * The deletes for a SetFilter that got no answer: its device and scope as the request
 * named them (the agent resolves them again), except what only the set itself could
 * resolve. A file's device is unknown here: it is the device of each filter Status shows
 * made from that file. A pid is never deleted by (its process may have moved or exited):
 * its cgroup is the one of each filter Status shows resolved from that pid. These delete
 * by device and scope rather than by a found filter's id because for a cgroup path only
 * the agent can tell which cgroup it names (its mount, relative forms), and device and
 * scope are exactly the key the set would have replaced.
 */
function unanswered(req: SetFilterRequest, filters: Filter__Output[]): DeleteFilterRequest[] {
  const scope = { ...(req.cgroupPath && { cgroupPath: req.cgroupPath }), ...(req.cgroupId && String(req.cgroupId) !== '0' && { cgroupId: req.cgroupId }) };
  if (!req.file && !req.pid) return [{ device: req.device, ...scope }];
  const sameScope = (f: Filter__Output) =>
    req.pid ? f.cgroup?.fromPid === req.pid
    : scope.cgroupId !== undefined ? f.cgroup?.id === String(scope.cgroupId)
    : scope.cgroupPath !== undefined ? !!f.cgroup
    : !f.cgroup;
  // a device named by a path cannot be matched to a DeviceRef here: the agent resolves it in the delete
  const onDevice = (f: Filter__Output) => (req.file ? f.file === req.file : !/^\d+:\d+$/.test(req.device!) || numbers(f) === req.device);
  return filters
    .filter((f) => f.device && onDevice(f) && sameScope(f))
    .map((f) => ({ device: req.file ? numbers(f) : req.device, ...(req.pid ? { cgroupId: f.cgroup!.id } : scope) }));
}

/** The plan's filters on one host: set through it, deleted through it. */
export class HostFilters {
  private readonly placed = new Map<string, Placed>();
  private answered = 0;

  get size(): number {
    return this.placed.size;
  }

  /** What the plan named here, for the filters that may remain. */
  names(): string[] {
    return [...this.placed.values()].map((p) => p.text);
  }

  /** One SetFilter, tracked before the call (it may land without an answer) and after. */
  async set(c: IoFilterClient, req: SetFilterRequest): Promise<Filter__Output> {
    const key = targetKey(req);
    let p = this.placed.get(key);
    if (!p) this.placed.set(key, (p = { req, text: targetText(req), at: new Map(), ids: new Map(), unsure: 0 }));
    p.unsure++;
    let f: Filter__Output;
    try {
      // FULL: the run's events carry the filter as stored, every range included
      f = await c.setFilter(compactRanges(req), 'full');
    } catch (e) {
      // an answered error changed nothing (SetFilter is all-or-nothing)
      if (classify(e).kind === 'error' && --p.unsure === 0 && !p.at.size) this.placed.delete(key);
      throw e;
    }
    if (f.device) {
      const d: DeleteFilterRequest = { device: numbers(f), ...(f.cgroup && { cgroupId: f.cgroup.id }) };
      p.at.set(deleteKey(d), d);
      if (!f.cgroup && f.id) p.ids.set(deleteKey(d), { id: f.id, seq: ++this.answered });
      p.unsure--;
    }
    return f;
  }

  /**
   * Deletes what the plan put here (Status first, if an unanswered call needs it); forgets
   * it once every delete is answered. Scoped filters go first, and an answered unscoped
   * filter is deleted by the id of its last answer: an agent refuses a delete of a
   * device's unscoped filter by device while scoped filters remain on it (they may not
   * be the plan's), so that delete is left to what only a device can name.
   */
  async delete(c: IoFilterClient): Promise<Deleted[]> {
    const all = [...this.placed.values()];
    const lookup = all.some((p) => p.unsure && (p.req.file || p.req.pid));
    const filters = lookup ? (await c.status()).filters : [];
    const deletes = new Map<string, { req: DeleteFilterRequest; names: string[]; id?: { id: number; seq: number } }>();
    const out: Deleted[] = [];
    for (const p of all) {
      const reqs = [...p.at.values(), ...(p.unsure ? unanswered(p.req, filters) : [])];
      if (!reqs.length) out.push({ filter: p.text, existed: false });
      for (const req of reqs) {
        const key = deleteKey(req);
        const d = deletes.get(key) ?? { req, names: [] };
        if (!d.names.includes(p.text)) d.names.push(p.text);
        const id = p.ids.get(key);
        if (id && (!d.id || id.seq > d.id.seq)) d.id = id;
        deletes.set(key, d);
      }
    }
    // an unsure unscoped set may have replaced the answered filter: then the device is all that names it
    const unsure = new Set(all.filter((p) => p.unsure).flatMap((p) => unanswered(p.req, filters).map(deleteKey)));
    const ordered = [...deletes.entries()].sort(([, a], [, b]) => Number(!scopeText(a.req)) - Number(!scopeText(b.req)));
    for (const [key, { req, names, id }] of ordered) {
      const r = await c.deleteFilter(id && !unsure.has(key) ? { id: id.id } : req);
      const scope = scopeText(req);
      out.push({ filter: names.join(', '), device: req.device!, ...(scope && { scope }), existed: r.removed > 0 || r.existed });
    }
    this.placed.clear();
    return out;
  }
}
