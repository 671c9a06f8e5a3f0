import { after } from "node:test";
import { Sandbox, type SandboxOptions } from "opensandbox";

const created: Sandbox[] = [];

// Registered when a test file imports this module: at its end, kill what it created.
after(async () => {
  await Promise.all(created.map((s) => s.kill()));
});

/** Creates a sandbox (busybox unless told) that is killed when the test file ends. */
export async function sandbox(opts: SandboxOptions = {}): Promise<Sandbox> {
  const sbx = await Sandbox.create({ template: "busybox", timeout: 300, ...opts });
  created.push(sbx);
  return sbx;
}

/** Polls `check` until it returns a truthy value or the deadline passes. */
export async function eventually<T>(check: () => T | Promise<T>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}` + (last ? `: ${String(last)}` : ""));
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}
