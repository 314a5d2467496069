// Scraping an agent's /metrics in tests: GET over HTTP and a parser of the Prometheus
// text format into samples ({name, labels, value}) with a lookup by name and labels,
// and the check that a scrape says what a Status says.
import * as http from 'node:http';
import type { StatusResponse__Output } from '../../proto/gen/iofilter/v1/StatusResponse';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export function get(url: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body }));
      })
      .on('error', reject);
  });
}

export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, (_x, c: string) => (c === 'n' ? '\n' : c));
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

export async function scrape(address: string): Promise<Metrics> {
  const r = await get(`http://${address}/metrics`);
  if (r.status !== 200) throw new Error(`GET /metrics: HTTP ${r.status}: ${r.body}`);
  return new Metrics(parseMetrics(r.body));
}

export class Metrics {
  constructor(readonly samples: Sample[]) {}
  /** Samples of `name` whose labels include `labels`. */
  all(name: string, labels: Record<string, string> = {}): Sample[] {
    return this.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  }
  /** The one sample of `name` with these labels; throws if there is none or more than one. */
  value(name: string, labels: Record<string, string> = {}): number {
    const found = this.all(name, labels);
    if (found.length !== 1) throw new Error(`${found.length} samples of ${name} ${JSON.stringify(labels)}`);
    return found[0].value;
  }
}

/** Every per-range and per-filter figure of a Status, looked up in a scrape. */
export function expectScrapeEqualsStatus(m: Metrics, st: StatusResponse__Output): void {
  let ranges = 0;
  for (const f of st.filters) {
    const dev = `${f.device!.major}:${f.device!.minor}`;
    const fl = { filter_id: String(f.id), dev, device: f.device!.name || dev };
    f.ranges.forEach((r, i) => {
      const rl = { ...fl, range: String(i), sectors: `${r.start}-${r.end}` };
      expect([m.value('iofilter_range_matched_total', rl), m.value('iofilter_range_failed_total', rl)]).toEqual([Number(r.matched), Number(r.failed)]);
      ranges++;
    });
    expect(m.value('iofilter_filter_matched_ios_total', fl)).toBe(Number(f.matchedIos));
    expect(m.value('iofilter_filter_failed_ios_total', fl)).toBe(Number(f.failedIos));
    expect(m.value('iofilter_filter_events_dropped_total', fl)).toBe(Number(f.eventsDropped));
  }
  // and nothing else: no series of a filter or range Status does not have
  expect(m.all('iofilter_range_matched_total')).toHaveLength(ranges);
  expect(m.all('iofilter_range_failed_total')).toHaveLength(ranges);
  expect(m.all('iofilter_filter_matched_ios_total')).toHaveLength(st.filters.length);
}
