// Prometheus metrics (prom-client) on --metrics-listen: the kernel's counters as
// Status reports them, read at scrape time (per filter and range, attach state, TTLs,
// losses, recursion and kprobe misses), the Watch hub's own figures, and RPC counts and latency
// by method and code, fed by the server's interceptor. Read-only: no way in to the agent.
import * as http from 'node:http';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Filter } from '../proto/gen/iofilter/v1/Filter';
import type { StatusResponse } from '../proto/gen/iofilter/v1/StatusResponse';
import { describeFault, faultKind } from '../proto/faults';
import { MODE_NAMES, modeFromWire } from '../proto/names';
import { backendFromWire } from './backends/types';
import type { EventHub } from './events';
import type { Logger } from './log';
import { isLoopback } from './security';

const FILTER_LABELS = ['filter_id', 'device', 'dev'] as const;
const RANGE_LABELS = [...FILTER_LABELS, 'range', 'sectors'] as const;
// an info series (value 1) to join on filter_id, so the counters keep their labels
const INFO_LABELS = [...FILTER_LABELS, 'backend', 'fault', 'detail'] as const;

type Num = number | string | { toString(): string } | null | undefined;
const num = (v: Num): number => Number(String(v ?? 0));

export class AgentMetrics {
  readonly registry = new Registry();
  private scraping: Promise<unknown> = Promise.resolve();
  private readonly m;

  constructor(
    private readonly status: () => Promise<StatusResponse>,
    private readonly hub?: EventHub,
  ) {
    const r = [this.registry];
    const counter = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) =>
      new Counter<L>({ name, help, labelNames, registers: r });
    const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) =>
      new Gauge<L>({ name, help, labelNames, registers: r });
    this.m = {
      rangeMatched: counter('iofilter_range_matched_total', 'I/Os that matched the range (its ops, overlapping sectors)', RANGE_LABELS),
      rangeFailed: counter('iofilter_range_failed_total', 'I/Os the range failed with EIO (observe mode: would have failed)', RANGE_LABELS),
      filterMatched: counter('iofilter_filter_matched_ios_total', 'I/Os that matched at least one range of the filter', FILTER_LABELS),
      filterFailed: counter('iofilter_filter_failed_ios_total', 'I/Os the filter failed (observe mode: would have failed)', FILTER_LABELS),
      eventsDropped: counter('iofilter_filter_events_dropped_total', "the filter's kernel events dropped: over its rate limit, or no ring buffer room", FILTER_LABELS),
      info: gauge('iofilter_filter_info', 'one per filter, value 1: the backend serving it and its fault (kind, and the one-line description)', INFO_LABELS),
      ttl: gauge('iofilter_filter_ttl_remaining_seconds', 'time before the kernel stops enforcing the filter (filters with a TTL only)', FILTER_LABELS),
      inForce: gauge('iofilter_filters_in_force', 'filters whose TTL has not run out'),
      filters: gauge('iofilter_filters', 'filters in the kernel map, expired ones included until reaped'),
      attached: gauge('iofilter_attached', '1 when the program is attached'),
      mode: gauge('iofilter_attach_mode', '1 for the attach mode in force, 0 for the others', ['mode']),
      eventsLost: counter('iofilter_events_lost_total', 'kernel events lost because the ring buffer had no room'),
      truncated: counter('iofilter_truncated_ios_total', 'I/Os that overlapped more ranges of one layer than the program judges'),
      recursion: counter('iofilter_program_recursion_misses_total', 'program runs the kernel skipped (recursion protection): I/O that passed unfiltered', ['prog_id', 'name']),
      linkMissed: counter('iofilter_program_link_misses_total', "runs the program's kprobe missed (re-entered on a CPU already in a kprobe; kprobe mode, 6.7+): I/O that passed unfiltered", ['prog_id', 'name']),
      watchers: gauge('iofilter_watchers', 'Watch streams open'),
      watchQueued: gauge('iofilter_watch_queued_events', 'events queued for Watch streams, over all of them'),
      watchReceived: counter('iofilter_watch_kernel_events_total', 'kernel events the agent received from the ring buffer'),
      watchLost: counter('iofilter_watch_lost_events_total', 'events a Watch stream lost because its client read too slowly'),
      rpcs: counter('iofilter_rpc_total', 'RPCs finished, by method and gRPC status code', ['method', 'code']),
      rpcSeconds: new Histogram({
        name: 'iofilter_rpc_duration_seconds',
        help: 'RPC handling time by method and code (Watch: how long the stream lasted)',
        labelNames: ['method', 'code'],
        buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60, 600],
        registers: r,
      }),
    };
    collectDefaultMetrics({ register: this.registry });
  }

  /** Called by the server's interceptor once per finished RPC. */
  observeRpc(method: string, code: string, seconds: number): void {
    this.m.rpcs.inc({ method, code });
    this.m.rpcSeconds.observe({ method, code }, seconds);
  }

  /** The exposition text, with kernel figures read now (scrapes run one at a time). */
  render(): Promise<string> {
    const run = this.scraping.then(async () => {
      this.update(await this.status());
      return this.registry.metrics();
    });
    this.scraping = run.catch(() => undefined);
    return run;
  }

  /** Sets every status-derived series from one Status answer; series of filters gone disappear. */
  update(st: StatusResponse): void {
    const m = this.m;
    for (const x of [m.rangeMatched, m.rangeFailed, m.filterMatched, m.filterFailed, m.eventsDropped, m.info, m.ttl, m.mode, m.recursion, m.linkMissed]) x.reset();
    const filters = st.filters ?? [];
    let inForce = 0;
    for (const f of filters) {
      const fl = filterLabels(f);
      (f.ranges ?? []).forEach((r, i) => {
        const rl = { ...fl, range: String(i), sectors: `${r.start ?? 0}-${r.end ?? 0}` };
        m.rangeMatched.inc(rl, num(r.matched));
        m.rangeFailed.inc(rl, num(r.failed));
      });
      m.filterMatched.inc(fl, num(f.matchedIos));
      m.filterFailed.inc(fl, num(f.failedIos));
      m.eventsDropped.inc(fl, num(f.eventsDropped));
      const backend = backendFromWire(f.backend);
      m.info.set({ ...fl, backend: backend === 'auto' || !backend ? 'bpf' : backend, fault: faultKind(f.fault), detail: describeFault(f.fault) }, 1);
      if (f.hasExpiry) m.ttl.set(fl, num(f.remainingMs) / 1000);
      if (!f.hasExpiry || num(f.remainingMs) > 0) inForce++;
    }
    m.filters.set(filters.length);
    m.inForce.set(inForce);
    const attached = !!st.state?.attached;
    m.attached.set(attached ? 1 : 0);
    const mode = attached ? modeFromWire(st.state?.mode) : undefined;
    for (const name of MODE_NAMES) if (name !== 'auto') m.mode.set({ mode: name }, name === mode ? 1 : 0);
    for (const p of st.state?.programs ?? []) {
      const pl = { prog_id: String(p.progId ?? 0), name: p.name ?? '' };
      if (p.recursionMisses !== undefined && p.recursionMisses !== null) m.recursion.inc(pl, num(p.recursionMisses));
      if (p.linkMissed !== undefined && p.linkMissed !== null) m.linkMissed.inc(pl, num(p.linkMissed));
    }
    setCounter(m.eventsLost, num(st.eventsLost));
    setCounter(m.truncated, num(st.truncatedIos));
    if (this.hub) {
      const h = this.hub.stats();
      m.watchers.set(h.watchers);
      m.watchQueued.set(h.queued);
      setCounter(m.watchReceived, h.received);
      setCounter(m.watchLost, Number(h.lostSlow));
    }
  }
}

function filterLabels(f: Filter): Record<(typeof FILTER_LABELS)[number], string> {
  const d = f.device ?? {};
  const dev = `${d.major ?? 0}:${d.minor ?? 0}`;
  return { filter_id: String(f.id ?? 0), device: d.name || dev, dev };
}

/** A counter whose running total lives elsewhere (the kernel, the hub). */
function setCounter(c: Counter, v: number): void {
  c.reset();
  c.inc(v);
}

export interface MetricsServer {
  /** The bound address, with the real port when 0 was asked for. */
  address: string;
  close(): Promise<void>;
}

/** Serves GET /metrics on `addr` (host:port as metricsAddress() made it). */
export async function serveMetrics(addr: string, metrics: AgentMetrics, log: Logger): Promise<MetricsServer> {
  const i = addr.lastIndexOf(':');
  const host = addr.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  const port = Number(addr.slice(i + 1));
  if (!isLoopback(addr))
    log.warn({ metricsListen: addr }, 'metrics listen on a non-loopback address: anyone who can reach it can read filters, devices and counters (read-only)');
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/metrics') {
      metrics.render().then(
        (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
        (e) => {
          log.error({ err: (e as Error).message }, 'metrics scrape failed');
          res.writeHead(500, { 'content-type': 'text/plain' }).end(`scrape failed: ${(e as Error).message}\n`);
        },
      );
    } else if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('iofilter-agent: metrics at /metrics\n');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: metrics are at /metrics\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const bound = server.address() as { port: number };
  const address = `${host.includes(':') ? `[${host}]` : host}:${bound.port}`;
  log.info({ metrics: `http://${address}/metrics` }, 'serving metrics');
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
