// Waiting for a condition in tests: polls until it holds, and on giving up says what
// was awaited and what was last seen (the jest timeout is the real bound).
export async function until<T>(probe: () => T | Promise<T>, what: string, timeoutMs = 20_000, everyMs = 5): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what} after ${timeoutMs} ms (last: ${JSON.stringify(v)})`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
