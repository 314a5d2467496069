// A process that holds a pin dir through the native binding and takes commands, one
// JSON object per line on stdin, answering one per line on stdout - for host tests
// that need the binding in another process or namespace (e.g. `unshare --time`).
// Runs from the build: node dist/tests/helpers/binding-child.js PIN_DIR
//   start: {"ready": true, "pid", "boottimeOffset": "<ns clock - real, ns>", "uptime"}
//   {"op": "put", "spec": FilterSpec with bigints as strings} -> {"filter": FilterInfo}
//   {"op": "get", "device": {major, minor}}                   -> {"filter": FilterInfo | null}
//   {"op": "quit"}: detaches, releases the lock, exits 0.  Errors: {"error": message}.
import * as fs from 'node:fs';
import * as readline from 'node:readline';
import * as native from '../../native';

const out = (v: unknown) => process.stdout.write(JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? String(x) : x)) + '\n');

/** The boottime offset of this process's time namespace, in ns, as /proc/self/timens_offsets says (0 without one). */
function boottimeOffset(): string {
  const line = fs.readFileSync('/proc/self/timens_offsets', 'utf8').split('\n').find((l) => /^(boottime|7)\s/.test(l));
  if (!line) return '0';
  const [, sec, nsec] = line.trim().split(/\s+/);
  return String(BigInt(sec) * 1_000_000_000n + BigInt(nsec));
}

function spec(s: Record<string, any>): native.FilterSpec {
  const big = (v: unknown) => (v === undefined ? undefined : BigInt(v as string));
  return {
    ...s,
    device: s.device,
    disk: s.disk,
    offset: BigInt(s.offset),
    size: big(s.size),
    ranges: (s.ranges ?? []).map((r: Record<string, any>) => ({ start: BigInt(r.start), end: BigInt(r.end), ops: r.ops })),
    maxFailures: big(s.maxFailures),
  } as native.FilterSpec;
}

async function main(): Promise<void> {
  const pinDir = process.argv[2];
  const lock = native.lock(pinDir);
  const f = await native.attach({ mode: 'observe', lock, selfTest: false });
  out({ ready: true, pid: process.pid, boottimeOffset: boottimeOffset(), uptime: fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0] });
  for await (const line of readline.createInterface({ input: process.stdin })) {
    const cmd = JSON.parse(line);
    try {
      if (cmd.op === 'put') out({ filter: f.putFilter(spec(cmd.spec)) });
      else if (cmd.op === 'get') out({ filter: f.getFilter({ device: cmd.device }) });
      else if (cmd.op === 'quit') break;
      else out({ error: `unknown op ${cmd.op}` });
    } catch (e) {
      out({ error: (e as Error).message });
    }
  }
  await f.detach();
  lock.release();
}

main().catch((e) => {
  process.stderr.write(`binding-child: ${(e as Error).message}\n`);
  process.exit(1);
});
