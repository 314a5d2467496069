// Scraping an agent's /metrics in tests: GET over HTTP and a parser of the Prometheus
// text format into samples ({name, labels, value}) with a lookup by name and labels.
import * as http from 'node:http';

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
