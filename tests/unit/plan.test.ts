// Experiment plans (client/plan.ts): what a plan means (hosts per step, requests, the
// TTL each step's filters carry) and every way a plan is refused - with file, line and
// column - before anything could be sent.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parsePlan, PlanError, schedule, ScheduleOptions } from '../../client/plan';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'iof-plan-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const EXAMPLE = `hosts: [db1, db2:7000]
check:
  command: curl -fsS http://db-lb/health
  every: 5s
  timeout: 3s
steps:
  - name: canary
    hosts: 1
    set: { device: "259:2", ops: [write], ranges: ["0-2047"], probability: 0.5 }
    hold: 2m
  - name: everyone
    hosts: all
    set: { device: /dev/nvme0n1p2, ops: [read, write] }
    hold: 5m
cleanup: delete
`;
const opts: ScheduleOptions = { hosts: [], concurrency: 64, timeoutMs: 10_000 };
const refuse = (text: string, re: RegExp, o: ScheduleOptions = opts) => {
  expect(() => schedule(parsePlan(text, 'plan.yaml'), o)).toThrow(PlanError);
  expect(() => schedule(parsePlan(text, 'plan.yaml'), o)).toThrow(re);
};
const step = (extra = '') => `steps:\n  - set: { device: "7:0", ops: [write] }\n    hold: 10s\n${extra}`;

describe('what a plan means', () => {
  test('the example of the issue: hosts, check, steps, requests', () => {
    const p = parsePlan(EXAMPLE, 'plan.yaml');
    expect(p.hosts).toEqual(['db1:50051', 'db2:7000']);
    expect(p.check).toEqual({ command: 'curl -fsS http://db-lb/health', cwd: process.cwd(), everyMs: 5000, timeoutMs: 3000 });
    expect(p.cleanup).toBe('delete');
    const s = schedule(p, opts);
    expect(s.steps.map((x) => [x.name, x.hosts, x.holdMs])).toEqual([
      ['canary', ['db1:50051'], 120_000],
      ['everyone', ['db1:50051', 'db2:7000'], 300_000],
    ]);
    expect(s.steps[0].requests).toEqual([
      { device: '259:2', ranges: [{ start: '0', end: '2047', ops: ['OP_WRITE'] }], probability: 0.5, ttlMs: s.steps[0].ttlMs },
    ]);
    expect(s.steps[1].requests).toEqual([{ device: '/dev/nvme0n1p2', wholeDeviceOps: ['OP_READ', 'OP_WRITE'], ttlMs: s.steps[1].ttlMs }]);
  });

  test('TTL: no shorter than the rest of the plan, no longer than its holds plus one deadline per round of hosts and two check timeouts per hold', () => {
    const p = parsePlan(EXAMPLE, 'plan.yaml');
    for (const o of [opts, { ...opts, timeoutMs: 2000 }, { hosts: Array.from({ length: 300 }, (_, i) => `h${i}:1`), concurrency: 64, timeoutMs: 5000 }]) {
      const s = schedule(p, o);
      const hosts = s.steps.map((x) => x.hosts.length);
      const rounds = (k: number) => hosts.slice(k).reduce((a, n) => a + Math.ceil(n / o.concurrency), 0) + Math.ceil(hosts[hosts.length - 1] / o.concurrency);
      s.steps.forEach((st, k) => {
        const holds = s.steps.slice(k).reduce((a, x) => a + x.holdMs, 0);
        const checks = 2 * 3000 * (s.steps.length - k);
        expect(st.ttlMs).toBeGreaterThanOrEqual(holds + checks + rounds(k) * o.timeoutMs);
        expect(st.ttlMs).toBeLessThanOrEqual(holds + checks + rounds(k) * (o.timeoutMs + 1000) + 1000);
        expect(st.requests.every((r) => r.ttlMs === st.ttlMs)).toBe(true);
      });
    }
  });

  test('cleanup: keep leaves the cleanup round out of the TTL', () => {
    const del = schedule(parsePlan(EXAMPLE, 'p'), opts).steps[0].ttlMs;
    const keep = schedule(parsePlan(EXAMPLE.replace('cleanup: delete', 'cleanup: keep'), 'p'), opts).steps[0].ttlMs;
    expect(del - keep).toBe(11_000); // one round of 2 hosts at a 10 s deadline (+1 s grace)
  });

  test('hosts: counts, percentages (rounded up) and all; earlier steps stay included', () => {
    const hosts = Array.from({ length: 10 }, (_, i) => `h${i}:1`);
    const text = `steps:
  - { hosts: 3, set: { device: "7:0", ops: [write] } }
  - { hosts: "10%", set: { device: "7:0", ops: [write] } }
  - { hosts: "25%", set: { device: "7:0", ops: [write] } }
  - { set: { device: "7:0", ops: [write] } }
`;
    const s = schedule(parsePlan(text, 'p'), { ...opts, hosts });
    expect(s.steps.map((x) => x.hosts)).toEqual([hosts.slice(0, 3), hosts.slice(0, 3), hosts.slice(0, 3), hosts]);
    expect(s.steps.map((x) => x.name)).toEqual(['step 1', 'step 2', 'step 3', 'step 4']);
    const s2 = schedule(parsePlan(text.replace('hosts: 3', 'hosts: 1'), 'p'), { ...opts, hosts });
    expect(s2.steps.map((x) => x.hosts.length)).toEqual([1, 1, 3, 10]);
  });

  test('--host replaces the plan hosts; a hostsFile is read relative to the plan', () => {
    fs.writeFileSync(path.join(tmp, 'fleet.txt'), '# fleet\nweb1\nweb2:7000 # second\n');
    const p = parsePlan(`hostsFile: fleet.txt\nhosts: "db1, db2"\n${step()}`, path.join(tmp, 'plan.yaml'));
    expect(p.hosts).toEqual(['db1:50051', 'db2:50051', 'web1:50051', 'web2:7000']);
    expect(schedule(p, { ...opts, hosts: ['x:1'] }).hosts).toEqual(['x:1']);
  });

  test('JSON is a plan too; `set` may be a list; every op word, write_zeroes spelled either way', () => {
    const json = JSON.stringify({
      hosts: ['a'],
      steps: [{ name: 's', set: [{ device: '7:0', ops: ['read', 'flush', 'discard', 'write-zeroes'], ranges: ['0-9'], ttl: '1h', maxFailures: 3 }, { device: '/dev/sdb', ops: ['write_zeroes'] }], hold: 30 }],
      cleanup: 'keep',
    });
    const s = schedule(parsePlan(json, 'plan.json'), opts);
    expect(s.cleanup).toBe('keep');
    expect(s.steps[0].holdMs).toBe(30_000);
    expect(s.steps[0].requests).toEqual([
      { device: '7:0', ranges: [{ start: '0', end: '9', ops: ['OP_READ', 'OP_FLUSH', 'OP_DISCARD', 'OP_WRITE_ZEROES'] }], maxFailures: 3, ttlMs: 3_600_000 },
      { device: '/dev/sdb', wholeDeviceOps: ['OP_WRITE_ZEROES'], ttlMs: s.steps[0].ttlMs },
    ]);
  });

  test('events and eventsSpared: the kernel event rate for watch, 0 for none', () => {
    const s = schedule(parsePlan(`hosts: [a]\nsteps:\n  - set: { device: "7:0", ops: [write], probability: 0.5, events: 0 }\n  - set: { device: "7:0", ops: [write], events: 20, eventsSpared: true }\n`, 'p.yaml'), opts);
    expect(s.steps.map((st) => [st.requests[0].eventsPerSecond, st.requests[0].eventsSpared])).toEqual([[0, undefined], [20, true]]);
  });

  test('a check without every/timeout: every 5s, timeout = every; `command: true` is a command; it runs in the plan\'s directory', () => {
    expect(parsePlan(`check: { command: true }\n${step()}`, path.join(tmp, 'p.yaml')).check).toEqual({ command: 'true', cwd: tmp, everyMs: 5000, timeoutMs: 5000 });
  });
});

describe('targets and scopes: file, cgroup, cgroupId, pid', () => {
  const filters = (set: string) => schedule(parsePlan(`hosts: [a]\nsteps:\n  - set: ${set}\n`, 'plan.yaml'), opts).steps[0].requests.map(({ ttlMs, ...r }) => (expect(Number(ttlMs)).toBeGreaterThan(0), r));

  test('a file: the request names the file, whole-file ops, no device', () => {
    expect(filters('{ file: /var/lib/db/base/16384, ops: [read] }')).toEqual([{ file: '/var/lib/db/base/16384', wholeDeviceOps: ['OP_READ'] }]);
  });

  test('each scope becomes its wire field; a cgroup id keeps all 64 bits when written as a plain number', () => {
    expect(filters('{ device: "7:0", cgroup: /system.slice/db.service, ops: [write] }')).toEqual([{ device: '7:0', cgroupPath: '/system.slice/db.service', wholeDeviceOps: ['OP_WRITE'] }]);
    expect(filters('{ device: "7:0", cgroupId: 18446744073709551615, ops: [write] }')).toEqual([{ device: '7:0', cgroupId: '18446744073709551615', wholeDeviceOps: ['OP_WRITE'] }]);
    expect(filters('{ device: "7:0", cgroupId: "4294967301", ops: [write] }')).toEqual([{ device: '7:0', cgroupId: 4294967301, wholeDeviceOps: ['OP_WRITE'] }]);
    expect(filters('{ file: /x, pid: 4321, ops: [read], probability: 0.1 }')).toEqual([{ file: '/x', pid: 4321, wholeDeviceOps: ['OP_READ'], probability: 0.1 }]);
  });

  test('one device with different scopes in one step, and one file with and without a scope: each is its own filter', () => {
    const set = `[{ device: "7:0", ops: [write] }, { device: "7:0", cgroup: /a, ops: [write] }, { device: "7:0", cgroup: /b, ops: [read] },
      { device: "7:0", cgroupId: 9, ops: [read] }, { device: "7:0", pid: 9, ops: [read] }, { file: /x, ops: [read] }, { file: /x, cgroup: /a, ops: [read] }]`;
    expect(filters(set).map((r) => [r.device ?? r.file, r.cgroupPath ?? r.cgroupId ?? r.pid ?? null])).toEqual([
      ['7:0', null], ['7:0', '/a'], ['7:0', '/b'], ['7:0', 9], ['7:0', 9], ['/x', null], ['/x', '/a'],
    ]);
  });

  test.each([
    ['device and file', `{ device: "7:0", file: /x, ops: [read] }`, /^plan\.yaml:3:10: steps\[0\]\.set: give either device or file, not both$/],
    ['neither device nor file', `{ cgroup: /a, ops: [read] }`, /^plan\.yaml:3:10: steps\[0\]\.set: give device \(MAJ:MIN or a \/dev path\) or file$/],
    ['a relative file', `{ file: var/x, ops: [read] }`, /^plan\.yaml:3:18: steps\[0\]\.set\.file: bad file "var\/x": give an absolute path on the agents' hosts$/],
    ['a file that is not a string', `{ file: [/x], ops: [read] }`, /^plan\.yaml:3:18: steps\[0\]\.set\.file: expected an absolute path$/],
    ['a file with ranges', `{ file: /x, ops: [read], ranges: ["0-7"] }`, /^plan\.yaml:3:10: steps\[0\]\.set: ranges cannot be used with file \(the file's extents are the ranges\)$/],
    ['cgroup and pid', `{ device: "7:0", cgroup: /a, pid: 3, ops: [read] }`, /^plan\.yaml:3:10: steps\[0\]\.set: give at most one of cgroup, cgroupId and pid \(got cgroup, pid\)$/],
    ['all three scopes', `{ file: /x, pid: 3, cgroupId: 4, cgroup: /a, ops: [read] }`, /^plan\.yaml:3:10: steps\[0\]\.set: give at most one of cgroup, cgroupId and pid \(got cgroup, cgroupId, pid\)$/],
    ['cgroupId 0', `{ device: "7:0", cgroupId: 0, ops: [read] }`, /^plan\.yaml:3:37: steps\[0\]\.set\.cgroupId: bad cgroupId "0": must be at least 1$/],
    ['cgroupId past 2^64-1', `{ device: "7:0", cgroupId: 18446744073709551616, ops: [read] }`, /^plan\.yaml:3:37: steps\[0\]\.set\.cgroupId: bad cgroupId "18446744073709551616": must be at most 2\^64-1$/],
    ['a cgroupId that is not a whole number', `{ device: "7:0", cgroupId: 1.5, ops: [read] }`, /^plan\.yaml:3:37: steps\[0\]\.set\.cgroupId: bad cgroupId "1\.5": must be a whole number$/],
    ['pid past pid_max', `{ device: "7:0", pid: 4194305, ops: [read] }`, /^plan\.yaml:3:32: steps\[0\]\.set\.pid: bad pid "4194305": must be at most 4194304$/],
    ['a negative pid', `{ device: "7:0", pid: -5, ops: [read] }`, /^plan\.yaml:3:32: steps\[0\]\.set\.pid: bad pid "-5": must be a whole number$/],
    ['an empty cgroup', `{ device: "7:0", cgroup: "", ops: [read] }`, /^plan\.yaml:3:35: steps\[0\]\.set\.cgroup: expected a non-empty string$/],
    ['a cgroup that is a list', `{ device: "7:0", cgroup: [/a], ops: [read] }`, /^plan\.yaml:3:35: steps\[0\]\.set\.cgroup: expected a cgroup path$/],
    ['a misspelt scope key', `{ device: "7:0", cgroup_id: 5, ops: [read] }`, /^plan\.yaml:3:27: steps\[0\]\.set: unknown key "cgroup_id" \(known: device, file, cgroup, cgroupId, pid, ops, /],
    ['one file twice', `[{ file: /x, ops: [read] }, { file: /x, ops: [write] }]`, /^plan\.yaml:3:10: steps\[0\]\.set: file \/x is given twice \(the agent keeps one filter per device and cgroup scope: the second would replace the first\)$/],
    ['one file twice with one scope', `[{ file: /x, pid: 7, ops: [read] }, { file: /x, pid: 7, ops: [write] }]`, /^plan\.yaml:3:10: steps\[0\]\.set: file \/x \(the cgroup of pid 7\) is given twice/],
    ['one device twice with one cgroup', `[{ device: "7:0", cgroup: /a, ops: [read] }, { device: "7:0", cgroup: /a, ops: [write] }]`, /^plan\.yaml:3:10: steps\[0\]\.set: device 7:0 \(cgroup \/a\) is given twice \(.*; put all its ranges in one\)$/],
    ['one device twice with one cgroup id', `[{ device: "7:0", cgroupId: 12, ops: [read] }, { device: "7:0", cgroupId: "12", ops: [write] }]`, /^plan\.yaml:3:10: steps\[0\]\.set: device 7:0 \(cgroup id 12\) is given twice/],
  ])('refused: %s', (_what, set, re) => refuse(`hosts: [a]\nsteps:\n  - set: ${set}\n`, re));
});

describe('refused, with file:line:col', () => {
  test.each([
    ['an unknown top-level key', `hosts: [a]\nstep:\n  - x\n`, /^plan\.yaml:2:1: plan: unknown key "step" \(known: hosts, hostsFile, check, steps, cleanup\)/],
    ['an unknown key in a filter', `hosts: [a]\nsteps:\n  - set: { device: "7:0", ops: [write], probabilty: 0.5 }\n`, /^plan\.yaml:3:41: steps\[0\]\.set: unknown key "probabilty"/],
    ['an unknown key in a step', `hosts: [a]\nsteps:\n  - set: { device: "7:0", ops: [write] }\n    hodl: 5m\n`, /^plan\.yaml:4:5: steps\[0\]: unknown key "hodl"/],
    ['a bad duration', `hosts: [a]\n${step().replace('10s', '10 parsecs')}`, /^plan\.yaml:4:11: steps\[0\]\.hold: bad duration "10 parsecs"/],
    ['a bad check interval', `hosts: [a]\ncheck: { command: x, every: 0s }\n${step()}`, /^plan\.yaml:2:29: check\.every: must be more than 0/],
    ['a check timeout longer than its interval', `hosts: [a]\ncheck: { command: x, every: 1s, timeout: 2s }\n${step()}`, /^plan\.yaml:2:42: check\.timeout: 2s is longer than check\.every 1s/],
    ['a check without a command', `hosts: [a]\ncheck: { every: 1s }\n${step()}`, /^plan\.yaml:2:8: check: `command` is missing/],
    ['no steps', `hosts: [a]\n`, /^plan\.yaml:1:1: plan: `steps` is missing/],
    ['an empty step list', `hosts: [a]\nsteps: []\n`, /^plan\.yaml:2:8: steps: give at least one step/],
    ['an empty file', ``, /^plan\.yaml:1:1: the plan is empty/],
    ['a step without set', `hosts: [a]\nsteps:\n  - hold: 1m\n`, /^plan\.yaml:3:5: steps\[0\]: `set` is missing/],
    ['a filter without ops', `hosts: [a]\nsteps:\n  - set: { device: "7:0" }\n`, /^plan\.yaml:3:10: steps\[0\]\.set: `ops` is missing/],
    ['an unknown op', `hosts: [a]\nsteps:\n  - set: { device: "7:0", ops: [write, trim] }\n`, /^plan\.yaml:3:40: steps\[0\]\.set\.ops\[1\]: unknown operation "trim"/],
    ['a bad device', `hosts: [a]\nsteps:\n  - set: { device: sda, ops: [write] }\n`, /^plan\.yaml:3:20: steps\[0\]\.set\.device: device "sda" is neither MAJ:MIN \(e\.g\. 259:2\) nor a \/dev path/],
    ['a bad range', `hosts: [a]\nsteps:\n  - set: { device: "7:0", ops: [write], ranges: ["9-1"] }\n`, /^plan\.yaml:3:50: steps\[0\]\.set\.ranges\[0\]: bad range "9-1": start 9 > end 1/],
    ['an event rate over the bound', `hosts: [a]\nsteps:\n  - set: { device: "7:0", ops: [write], events: 1000001 }\n`, /^plan\.yaml:3:49: steps\[0\]\.set\.events: bad events per second "1000001": must be at most 1000000 events per second$/],
    ['eventsSpared that is not a boolean', `hosts: [a]\nsteps:\n  - set: { device: "7:0", ops: [write], eventsSpared: yes }\n`, /^plan\.yaml:3:55: steps\[0\]\.set\.eventsSpared: expected true or false$/],
    ['a bad probability', `hosts: [a]\nsteps:\n  - set: { device: "7:0", ops: [write], probability: 2 }\n`, /^plan\.yaml:3:54: steps\[0\]\.set\.probability: bad probability "2"/],
    ['one device twice in a step', `hosts: [a]\nsteps:\n  - set: [{ device: "7:0", ops: [write] }, { device: "7:0", ops: [read] }]\n`, /^plan\.yaml:3:10: steps\[0\]\.set: device 7:0 is given twice/],
    ['a bad host', `hosts: [a, "b:99999"]\n${step()}`, /^plan\.yaml:1:12: hosts\[1\]: host "b:99999": port must be 1-65535/],
    ['a missing hosts file', `hostsFile: /nonexistent/fleet.txt\n${step()}`, /^plan\.yaml:1:12: hostsFile: cannot read hosts file/],
    ['a bad host count', `hosts: [a]\nsteps:\n  - { hosts: 0, set: { device: "7:0", ops: [write] } }\n`, /^plan\.yaml:3:14: steps\[0\]\.hosts: "0" is not a count/],
    ['a percentage over 100', `hosts: [a]\nsteps:\n  - { hosts: "101%", set: { device: "7:0", ops: [write] } }\n`, /^plan\.yaml:3:14: steps\[0\]\.hosts: "101%"/],
    ['more hosts than the plan has', `hosts: [a, b]\nsteps:\n  - { hosts: 3, set: { device: "7:0", ops: [write] } }\n`, /^plan\.yaml:3:14: step "step 1" wants 3 hosts; the plan has 2/],
    ['two steps of one name', `hosts: [a]\nsteps:\n  - { name: x, set: { device: "7:0", ops: [write] } }\n  - { name: x, set: { device: "7:0", ops: [write] } }\n`, /^plan\.yaml:4:5: steps\[1\]: name "x" is also the name of steps\[0\]/],
    ['a bad cleanup', `hosts: [a]\n${step()}cleanup: later\n`, /^plan\.yaml:5:10: cleanup: "later" is neither delete nor keep/],
    ['a duplicate key', `hosts: [a]\nhosts: [b]\n${step()}`, /^plan\.yaml:2:1: Map keys must be unique/],
    ['broken YAML', `hosts: [a\nsteps: x\n`, /^plan\.yaml:\d+:\d+: /],
    ['two documents', `hosts: [a]\n---\n${step()}`, /^plan\.yaml:2:1: Source contains multiple documents/],
    ['a key without a value', `hosts: [a]\nsteps:\n  - set: { device: "7:0", ops: [write] }\n    hold:\n`, /^plan\.yaml:4:5: steps\[0\]\.hold: no value given/],
    ['a list where a mapping belongs', `hosts: [a]\nsteps:\n  - [1, 2]\n`, /^plan\.yaml:3:5: steps\[0\]: expected a mapping/],
  ])('%s', (_what, text, re) => refuse(text, re));

  test("a step's TTL shorter than what is left of the plan, at its own position; exactly that is accepted", () => {
    const text = (ttl: string) => `hosts: [a]
steps:
  - name: one
    set: { device: "7:0", ops: [write], ttl: ${ttl} }
    hold: 1m
  - name: two
    set: { device: "7:0", ops: [write] }
    hold: 2m
`;
    const need = schedule(parsePlan(text('1h'), 'plan.yaml'), opts).steps[0].ttlMs;
    expect(need).toBeGreaterThan(180_000); // at least both holds
    refuse(text(`${need - 1000}ms`), /^plan\.yaml:4:46: ttl \d+m\d+s of step "one" is shorter than what is left of the plan from that step \(up to \d+m\d+s/);
    refuse(text('2m59s'), /^plan\.yaml:4:46: ttl 2m59s of step "one"/);
    expect(schedule(parsePlan(text(`${need}ms`), 'plan.yaml'), opts).steps[0].requests[0].ttlMs).toBe(need);
  });

  test('no host anywhere', () => refuse(step(), /^plan\.yaml: no host: give hosts or hostsFile in the plan, or --host\/--hosts-file/));
});
