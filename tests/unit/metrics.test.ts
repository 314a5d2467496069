// Prometheus metrics of an in-process agent (fake kernel, fake sysfs): every per-range
// and per-filter counter scraped from /metrics equals what Status says, series of
// deleted filters disappear, RPC counts and latency by method and code, attach state,
// kernel losses and recursion misses from a Status that has them, the HTTP surface,
// and the metricsListen address rules (off by default, a bare port is loopback).
import * as http from 'node:http';
import * as fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { ConfigError, DEFAULTS, metricsAddress, resolveConfig } from '../../agent/config';
import { AgentMetrics, serveMetrics } from '../../agent/metrics';
import { Agent, createAgent } from '../../agent/server';
import { IoFilterClient } from '../../client';
import type { StatusResponse } from '../../proto/gen/iofilter/v1/StatusResponse';
import { fakeKernel, fakeSysfs } from '../helpers/fake-kernel';
import { expectScrapeEqualsStatus, get, Metrics, parseMetrics, scrape } from '../helpers/prom';
import { until } from '../helpers/wait';

const sysfs = fakeSysfs();
const kernel = fakeKernel();
let agent: Agent;
let client: IoFilterClient;

beforeAll(async () => {
  const cfg = resolveConfig({ listen: '127.0.0.1:0', attach: 'observe', pinDir: '/x', metricsListen: '127.0.0.1:0' });
  agent = await createAgent(cfg, pino({ level: 'silent' }), kernel, sysfs);
  client = new IoFilterClient(agent.address, { timeoutMs: 5000 });
});
afterAll(async () => {
  client.close();
  await agent.stop(1000);
  fs.rmSync(sysfs, { recursive: true, force: true });
});

test('per-range matched and failed, per-filter figures, filters in force and TTL equal Status', async () => {
  await client.setFilter({ device: '7:0', ranges: [{ start: 0, end: 99, ops: ['OP_WRITE'] }, { start: 1000, end: 1999, ops: ['OP_READ', 'OP_WRITE'] }], ttlMs: 600_000 });
  await client.setFilter({ device: '7:1', wholeDeviceOps: ['OP_READ'], ttlMs: 120_000 });
  // the kernel counted some I/O
  const f0 = kernel.filterer!.filters.find((f) => f.device.major === 7 && f.device.minor === 0)!;
  f0.ranges[0].matched = 12n;
  f0.ranges[0].failed = 11n;
  f0.ranges[1].matched = 3n;
  const f1 = kernel.filterer!.filters.find((f) => f.device.major === 7 && f.device.minor === 1)!;
  f1.ranges[0].matched = 9_007_199_254_740_993n; // past 2^53: Prometheus values are doubles
  f1.ranges[0].failed = 5n;

  const st = await client.status();
  const m = await scrape(agent.metricsAddress!);
  expectScrapeEqualsStatus(m, st);
  expect(m.value('iofilter_range_matched_total', { dev: '7:0', range: '0', sectors: '0-99', device: 'loop0' })).toBe(12);
  expect(m.value('iofilter_range_failed_total', { dev: '7:0', range: '0' })).toBe(11);
  expect(m.value('iofilter_range_matched_total', { dev: '7:1', device: 'loop0p1' })).toBe(9_007_199_254_740_992);
  expect(m.value('iofilter_filters')).toBe(2);
  expect(m.value('iofilter_filters_in_force')).toBe(2);
  expect(m.value('iofilter_filter_ttl_remaining_seconds', { dev: '7:0' })).toBe(600);
  expect(m.value('iofilter_filter_ttl_remaining_seconds', { dev: '7:1' })).toBe(120);
  expect(m.value('iofilter_attached')).toBe(1);
  expect(Object.fromEntries(m.all('iofilter_attach_mode').map((s) => [s.labels.mode, s.value]))).toEqual({ fmod_ret: 0, kprobe: 0, observe: 1 });

  // a deleted filter's series are gone from the next scrape
  await client.deleteFilter('7:1');
  const m2 = await scrape(agent.metricsAddress!);
  expectScrapeEqualsStatus(m2, await client.status());
  expect(m2.all('iofilter_range_matched_total', { dev: '7:1' })).toEqual([]);
  expect(m2.value('iofilter_filters')).toBe(1);
});

test('RPC counts and latency histograms by method and code, streams included', async () => {
  const before = await scrape(agent.metricsAddress!);
  const count = (m: Metrics, method: string, code: string) => m.all('iofilter_rpc_total', { method, code }).reduce((n, s) => n + s.value, 0);
  const hist = (m: Metrics, method: string, code: string) => m.all('iofilter_rpc_duration_seconds_count', { method, code }).reduce((n, s) => n + s.value, 0);
  for (let i = 0; i < 3; i++) await client.status();
  const err = await client.setFilter({ device: '7:0', ranges: [{ start: 10, end: 5, ops: ['OP_WRITE'] }] }).then(() => null, (e) => e);
  expect(grpc.status[err.code]).toBe('INVALID_ARGUMENT');
  const w = client.watch({});
  w.on('error', () => undefined);
  await new Promise((r) => w.once('metadata', r));
  expect((await scrape(agent.metricsAddress!)).value('iofilter_watchers')).toBe(1);
  w.cancel();
  await until(async () => count(await scrape(agent.metricsAddress!), 'Watch', 'CANCELLED') === count(before, 'Watch', 'CANCELLED') + 1, 'the cancelled Watch to be counted');

  const after = await scrape(agent.metricsAddress!);
  expect(count(after, 'Status', 'OK') - count(before, 'Status', 'OK')).toBe(3);
  expect(hist(after, 'Status', 'OK') - hist(before, 'Status', 'OK')).toBe(3);
  expect(count(after, 'SetFilter', 'INVALID_ARGUMENT') - count(before, 'SetFilter', 'INVALID_ARGUMENT')).toBe(1);
  expect(hist(after, 'SetFilter', 'INVALID_ARGUMENT') - hist(before, 'SetFilter', 'INVALID_ARGUMENT')).toBe(1);
  expect(after.value('iofilter_watchers')).toBe(0);
  // a histogram's buckets are cumulative and end with +Inf = count
  const inf = after.value('iofilter_rpc_duration_seconds_bucket', { method: 'Status', code: 'OK', le: '+Inf' });
  expect(inf).toBe(hist(after, 'Status', 'OK'));
});

test('figures only a full Status has: kernel losses, truncation, recursion and kprobe misses, expired and TTL-less filters, detached', async () => {
  const st: StatusResponse = {
    state: { attached: false, programs: [{ progId: 41, name: 'iofilter_kprobe', recursionMisses: '7', runCount: '0', linkMissed: '3' }, { progId: 42, name: 'old_kernel' /* < 5.12, < 6.7: not reported */ }] },
    eventsLost: '13',
    truncatedIos: '2',
    filters: [
      { id: 5, device: { major: 8, minor: 0, name: 'sda' }, hasExpiry: true, remainingMs: '0', matchedIos: '4', failedIos: '3', eventsDropped: '99', ranges: [{ start: '0', end: '7', matched: '4', failed: '3' }] },
      { id: 6, device: { major: 8, minor: 16 }, hasExpiry: false, ranges: [], backend: 'BACKEND_DM', fault: { delay: { readMs: 50, writeMs: 50, flushMs: 0 }, kind: 'delay' } },
    ],
  };
  const metrics = new AgentMetrics(async () => st);
  const m = new Metrics(parseMetrics(await metrics.render()));
  expect(m.value('iofilter_events_lost_total')).toBe(13);
  expect(m.value('iofilter_truncated_ios_total')).toBe(2);
  expect(m.all('iofilter_program_recursion_misses_total').map((s) => [s.labels, s.value])).toEqual([[{ prog_id: '41', name: 'iofilter_kprobe' }, 7]]);
  expect(m.all('iofilter_program_link_misses_total').map((s) => [s.labels, s.value])).toEqual([[{ prog_id: '41', name: 'iofilter_kprobe' }, 3]]);
  expect(m.value('iofilter_filter_events_dropped_total', { filter_id: '5', device: 'sda', dev: '8:0' })).toBe(99);
  expect(m.value('iofilter_filter_failed_ios_total', { filter_id: '5' })).toBe(3);
  expect(m.value('iofilter_filters')).toBe(2);
  expect(m.value('iofilter_filters_in_force')).toBe(1); // the expired one is not in force
  expect(m.all('iofilter_filter_ttl_remaining_seconds').map((s) => [s.labels.filter_id, s.value])).toEqual([['5', 0]]); // none for a filter without TTL
  expect(m.value('iofilter_filter_matched_ios_total', { filter_id: '6', device: '8:16' })).toBe(0); // no name: the numbers
  // which backend serves each filter and with what fault (unset: bpf, error EIO)
  expect(m.all('iofilter_filter_info').map((s) => [s.labels, s.value])).toEqual([
    [{ filter_id: '5', device: 'sda', dev: '8:0', backend: 'bpf', fault: 'error', detail: 'error EIO' }, 1],
    [{ filter_id: '6', device: '8:16', dev: '8:16', backend: 'dm', fault: 'delay', detail: 'delay read 50 ms, write 50 ms, flush 0 ms' }, 1],
  ]);
  expect(m.value('iofilter_attached')).toBe(0);
  expect(m.all('iofilter_attach_mode').every((s) => s.value === 0)).toBe(true);
  expect(m.all('process_resident_memory_bytes')).toHaveLength(1); // the process's own, for memory dashboards
});

test('HTTP: /metrics in the Prometheus text format; other paths and methods refused', async () => {
  const ok = await get(`http://${agent.metricsAddress}/metrics`);
  expect([ok.status, ok.type]).toEqual([200, 'text/plain; version=0.0.4; charset=utf-8']);
  expect(ok.body).toMatch(/^# HELP iofilter_range_matched_total /m);
  expect(ok.body).toMatch(/^# TYPE iofilter_range_matched_total counter$/m);
  expect((await get(`http://${agent.metricsAddress}/`)).status).toBe(200);
  expect((await get(`http://${agent.metricsAddress}/debug`)).status).toBe(404);
  const post = await new Promise<number>((resolve, reject) => {
    const [host, port] = agent.metricsAddress!.split(':');
    const req = http.request({ host, port, method: 'POST', path: '/metrics' }, (res: { statusCode: number; resume(): void }) => (res.resume(), resolve(res.statusCode)));
    req.on('error', reject);
    req.end();
  });
  expect(post).toBe(405);
});

describe('metricsListen', () => {
  test.each([
    ['9464', '127.0.0.1:9464'],
    ['0.0.0.0:9464', '0.0.0.0:9464'],
    ['[::1]:9464', '[::1]:9464'],
    ['node-1.example:9100', 'node-1.example:9100'],
  ])('%s -> %s', (v, want) => {
    expect(metricsAddress(v)).toBe(want);
    expect(resolveConfig({ metricsListen: v }).metricsListen).toBe(want);
  });
  test.each(['', 'abc', ':9464', '70000', 'host:99999', 'a b:1'])('%j is refused', (v) => {
    expect(() => resolveConfig({ metricsListen: v })).toThrow(ConfigError);
  });
  test('off by default: no metrics listener', async () => {
    expect(DEFAULTS.metricsListen).toBeUndefined();
    const a = await createAgent(resolveConfig({ listen: '127.0.0.1:0', attach: 'none', pinDir: '/x' }), pino({ level: 'silent' }), fakeKernel(), sysfs);
    expect(a.metricsAddress).toBeUndefined();
    await a.stop(100);
  });
  test('a non-loopback metrics address is allowed and logged as a warning', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(s) });
    const srv = await serveMetrics('0.0.0.0:0', new AgentMetrics(async () => ({})), log);
    try {
      const warn = lines.map((l) => JSON.parse(l)).find((l) => l.level === 40);
      expect(warn).toMatchObject({ metricsListen: '0.0.0.0:0' });
      expect(warn.msg).toMatch(/non-loopback.*read-only/);
      expect((await get(`http://127.0.0.1:${srv.address.split(':').pop()}/metrics`)).status).toBe(200);
    } finally {
      await srv.close();
    }
    lines.length = 0;
    const local = await serveMetrics('127.0.0.1:0', new AgentMetrics(async () => ({})), log);
    await local.close();
    expect(lines.map((l) => JSON.parse(l)).filter((l) => l.level >= 40)).toEqual([]);
  });
});
