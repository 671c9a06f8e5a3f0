import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { sandbox } from "./helpers.js";

const SIZE = 100 * 1024 * 1024;

async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest("hex");
}

test("100 MiB upload and download, streamed, SHA-256 equal", { timeout: 120_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), "osb-ts-"));
  after(() => rm(dir, { recursive: true, force: true }));
  // A random local file, hashed as it is written.
  const src = join(dir, "src.bin");
  const want = createHash("sha256");
  const fh = await open(src, "w");
  for (let off = 0; off < SIZE; off += 4 << 20) {
    const chunk = randomBytes(Math.min(4 << 20, SIZE - off));
    want.update(chunk);
    await fh.write(chunk);
  }
  await fh.close();
  const digest = want.digest("hex");

  const sbx = await sandbox({ timeout: 300 });
  let upCalls = 0;
  let upLast = 0;
  const info = await sbx.files.upload(src, "/tmp/big.bin", {
    onProgress: (n, total) => {
      upCalls++;
      upLast = n;
      assert.equal(total, SIZE);
    },
  });
  assert.equal(info.size, SIZE);
  assert.equal(upLast, SIZE);
  assert.ok(upCalls > 10);

  const remote = await sbx.commands.run("sha256sum /tmp/big.bin");
  assert.equal(remote.stdout.split(" ")[0], digest, "the sandbox's copy has the same SHA-256");

  const dst = join(dir, "dst.bin");
  let downLast = 0;
  await sbx.files.download("/tmp/big.bin", dst, { onProgress: (n) => (downLast = n) });
  assert.equal(downLast, SIZE);
  assert.equal(await sha256File(dst), digest, "the downloaded copy has the same SHA-256");
});
