import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { before, test } from "node:test";
import { type FilesystemEvent, NotFoundError, type Sandbox } from "opensandbox";
import { eventually, sandbox } from "./helpers.js";

let sbx: Sandbox;
before(async () => {
  sbx = await sandbox();
});

test("write and read text, bytes and streams", async () => {
  const info = await sbx.files.write("/tmp/f/hello.txt", "héllo\n");
  assert.equal(info.path, "/tmp/f/hello.txt");
  assert.equal(info.name, "hello.txt");
  assert.equal(info.size, 7);
  assert.equal(info.isDir, false);
  assert.equal(await sbx.files.read("/tmp/f/hello.txt"), "héllo\n");

  const bytes = new Uint8Array(256).map((_, i) => i);
  await sbx.files.write("/tmp/f/all.bin", bytes);
  assert.deepEqual(await sbx.files.read("/tmp/f/all.bin", { format: "bytes" }), bytes);

  const stream = await sbx.files.read("/tmp/f/all.bin", { format: "stream" });
  const chunks: Uint8Array[] = [];
  for await (const c of stream) chunks.push(c);
  assert.deepEqual(new Uint8Array(Buffer.concat(chunks)), bytes);

  const web = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(new TextEncoder().encode("from a "));
      c.enqueue(new TextEncoder().encode("web stream"));
      c.close();
    },
  });
  await sbx.files.write("/tmp/f/web.txt", web);
  assert.equal(await sbx.files.read("/tmp/f/web.txt"), "from a web stream");

  await sbx.files.write("/tmp/f/node.txt", Readable.from([Buffer.from("node "), Buffer.from("readable")]));
  assert.equal(await sbx.files.read("/tmp/f/node.txt"), "node readable");

  await sbx.files.write("/tmp/f/ab.txt", new TextEncoder().encode("array buffer").buffer);
  assert.equal(await sbx.files.read("/tmp/f/ab.txt"), "array buffer");

  await sbx.files.write("/tmp/f/blob.txt", new Blob(["blob"]));
  assert.equal(await sbx.files.read("/tmp/f/blob.txt"), "blob");

  const script = await sbx.files.write("/tmp/f/run.sh", "#!/bin/sh\necho ran\n", { mode: 0o755 });
  assert.equal(script.mode, "0755");
  assert.equal((await sbx.commands.run("/tmp/f/run.sh")).stdout, "ran\n");
});

test("progress is reported on upload and download", async () => {
  const data = new Uint8Array(3 * 1024 * 1024 + 5).fill(7);
  const up: number[] = [];
  await sbx.files.write("/tmp/p.bin", data, { onProgress: (n, total) => (up.push(n), assert.equal(total, data.length)) });
  assert.ok(up.length >= 4, `${up.length} upload progress calls`);
  assert.equal(up.at(-1), data.length);
  const down: [number, number | undefined][] = [];
  const got = await sbx.files.read("/tmp/p.bin", { format: "bytes", onProgress: (n, t) => down.push([n, t]) });
  assert.equal(got.length, data.length);
  assert.deepEqual(down.at(-1), [data.length, data.length]);
});

test("list, stat, exists, makeDir, rename and remove", async () => {
  const dir = await sbx.files.makeDir("/tmp/tree/a/b");
  assert.equal(dir.isDir, true);
  assert.equal(dir.path, "/tmp/tree/a/b");
  await sbx.files.write("/tmp/tree/top.txt", "1");
  await sbx.files.write("/tmp/tree/a/mid.txt", "22");
  await sbx.files.write("/tmp/tree/a/b/deep.txt", "333");

  const one = await sbx.files.list("/tmp/tree");
  assert.deepEqual(one.map((e) => e.name).sort(), ["a", "top.txt"]);
  const deep = await sbx.files.list("/tmp/tree", { depth: 3 });
  assert.deepEqual(deep.map((e) => e.path).sort(), [
    "/tmp/tree/a",
    "/tmp/tree/a/b",
    "/tmp/tree/a/b/deep.txt",
    "/tmp/tree/a/mid.txt",
    "/tmp/tree/top.txt",
  ]);

  const st = await sbx.files.stat("/tmp/tree/a/mid.txt");
  assert.equal(st.size, 2);
  assert.equal(st.isDir, false);
  assert.ok(st.modTime instanceof Date && Date.now() - st.modTime.getTime() < 60_000);

  assert.equal(await sbx.files.exists("/tmp/tree/top.txt"), true);
  assert.equal(await sbx.files.exists("/tmp/tree/nope"), false);

  const moved = await sbx.files.rename("/tmp/tree/top.txt", "/tmp/tree/a/moved.txt");
  assert.equal(moved.path, "/tmp/tree/a/moved.txt");
  assert.equal(await sbx.files.exists("/tmp/tree/top.txt"), false);
  assert.equal(await sbx.files.read("/tmp/tree/a/moved.txt"), "1");

  await sbx.files.remove("/tmp/tree/a");
  assert.equal(await sbx.files.exists("/tmp/tree/a"), false);
  assert.deepEqual(await sbx.files.list("/tmp/tree"), []);
  await assert.rejects(sbx.files.read("/tmp/tree/a/mid.txt"), NotFoundError);
});

test("watch sees creates, writes, renames and removes until stopped", async () => {
  await sbx.files.makeDir("/tmp/watched/sub");
  const events: FilesystemEvent[] = [];
  let exited = false;
  const w = await sbx.files.watch("/tmp/watched", (ev) => events.push(ev), {
    recursive: true,
    onExit: (err) => {
      assert.equal(err, undefined);
      exited = true;
    },
  });
  const has = (type: string, path: string) => events.some((e) => e.type === type && e.path === path);

  await sbx.files.write("/tmp/watched/a.txt", "a"); // uploads land by rename: a create
  await eventually(() => has("create", "/tmp/watched/a.txt"), "the create of a.txt");
  await sbx.commands.run("echo more >> /tmp/watched/a.txt");
  await eventually(() => has("write", "/tmp/watched/a.txt"), "the write to a.txt");
  await sbx.files.write("/tmp/watched/sub/deep.txt", "d");
  await eventually(() => has("create", "/tmp/watched/sub/deep.txt"), "a create in a subdirectory");
  await sbx.files.rename("/tmp/watched/a.txt", "/tmp/watched/b.txt");
  await eventually(() => has("rename", "/tmp/watched/a.txt") || has("create", "/tmp/watched/b.txt"), "the rename");
  await sbx.files.remove("/tmp/watched/b.txt");
  await eventually(() => has("remove", "/tmp/watched/b.txt"), "the remove");
  await sbx.files.makeDir("/tmp/watched/newdir");
  await eventually(() => events.some((e) => e.path === "/tmp/watched/newdir" && e.isDir), "a directory event");

  w.stop();
  await eventually(() => exited, "the watch to end");
  const count = events.length;
  await sbx.files.write("/tmp/watched/after.txt", "x");
  // Round trips that would have carried an event had the watch lived on.
  await sbx.commands.run("true");
  await sbx.files.stat("/tmp/watched/after.txt");
  assert.equal(events.length, count, "no events after stop()");

  await assert.rejects(sbx.files.watch("/tmp/not-there", () => {}), NotFoundError);
});
