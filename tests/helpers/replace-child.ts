// Replaces one filter again and again in pools too small to hold three copies of it,
// each change needing the memory the one before quarantined (tests/host/table-pools.test.ts).
// Runs in its own process, as a wedged binding would block its event loop for good.
// node dist/tests/helpers/replace-child.js PIN_DIR MAJOR MINOR MAX_RANGES_TOTAL RANGES TIMES [MODE]
// (MODE: observe by default; the ranges are writes of sectors 8i..8i+3)
// prints {"ok": true, "ranges": N, "ms": ...} or {"error": message}
import * as fs from 'node:fs';
import * as native from '../../native';

async function main(): Promise<void> {
  const [pinDir, major, minor, maxRanges, nr, times, mode = 'observe'] = process.argv.slice(2);
  const lock = native.lock(pinDir);
  const f = await native.attach({ mode: mode as native.AttachMode, lock, selfTest: false, maxRangesTotal: Number(maxRanges) });
  const dev = { major: Number(major), minor: Number(minor) };
  const ranges = Array.from({ length: Number(nr) }, (_v, i) => ({ start: BigInt(i * 8), end: BigInt(i * 8 + 3), ops: ['write' as const] }));
  const t0 = Date.now();
  try {
    for (let i = 0; i < Number(times); i++) {
      f.putFilter({ device: dev, disk: dev, offset: 0n, ranges });
      // let the reclaimer begin a round for what this change quarantined, so the next
      // change waits on a round already running (the schedule that wedged the agent)
      await new Promise((r) => setTimeout(r, 1));
    }
    const got = f.getFilter({ device: dev });
    process.stdout.write(JSON.stringify({ ok: true, ranges: got?.ranges.length ?? 0, ms: Date.now() - t0 }) + '\n');
  } finally {
    await f.detach();
    lock.release();
    fs.rmSync(pinDir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ error: (e as Error).message }) + '\n');
  process.exit(1);
});
