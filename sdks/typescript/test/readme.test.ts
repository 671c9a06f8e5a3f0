import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");

test("the README's quick start runs as written", async () => {
  const readme = await readFile(join(pkg, "README.md"), "utf8");
  const m = /## Quick start[\s\S]*?```js\n([\s\S]*?)```/.exec(readme);
  assert.ok(m, "README has a js quick start");
  const code = m[1]!;
  assert.equal(code.trim().split("\n").length, 5, "five lines");
  // Inside the package folder, "opensandbox" resolves to this package.
  const file = join(pkg, "dist-test", "quickstart.mjs");
  await writeFile(file, code);
  const { stdout } = await promisify(execFile)(process.execPath, [file], { timeout: 60_000 });
  assert.equal(stdout, "2\n");
  // That it killed its sandbox, scripts/with-server.sh checks at the end of the run.
});
