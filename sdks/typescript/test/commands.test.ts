import assert from "node:assert/strict";
import { before, test } from "node:test";
import { CommandHandle, OpenSandboxError, type Sandbox, TimeoutError } from "opensandbox";
import { eventually, sandbox } from "./helpers.js";

let sbx: Sandbox;
before(async () => {
  sbx = await sandbox({ template: "base" });
});

test("run answers exit code, stdout and stderr", async () => {
  const r = await sbx.commands.run("echo out; echo err >&2; exit 3");
  assert.equal(r.exitCode, 3);
  assert.equal(r.stdout, "out\n");
  assert.equal(r.stderr, "err\n");
});

test("a command that runs the sandbox out of memory is the one killed", async () => {
  const r = await sbx.commands.run("dd if=/dev/zero of=/dev/null bs=700M count=1");
  assert.equal(r.exitCode, 137);
  assert.equal(r.oomKilled, true);
  assert.equal((await sbx.commands.run("echo alive")).stdout, "alive\n");
});

test("run with args, envs, cwd and stdin", async () => {
  const argv = await sbx.commands.run("printf", { args: ["%s|", "a b", "$HOME"] });
  assert.equal(argv.stdout, "a b|$HOME|", "args are argv, not shell words");
  const env = await sbx.commands.run("echo $A-$B", { envs: { A: "1", B: "two" } });
  assert.equal(env.stdout, "1-two\n");
  await sbx.files.makeDir("/tmp/work dir");
  const cwd = await sbx.commands.run("pwd", { cwd: "/tmp/work dir" });
  assert.equal(cwd.stdout, "/tmp/work dir\n");
  const stdin = await sbx.commands.run("tr a-z A-Z", { stdin: "shout\n" });
  assert.equal(stdin.stdout, "SHOUT\n");
  const missing = await sbx.commands.run("no-such-program-here", { args: [] });
  assert.equal(missing.exitCode, 127);
});

test("streamed run calls back while the command runs", async () => {
  const chunks: { at: number; data: string }[] = [];
  const errs: string[] = [];
  const started = Date.now();
  const r = await sbx.commands.run("for i in 1 2 3; do echo line$i; echo e$i >&2; sleep 0.3; done; exit 5", {
    onStdout: (data) => chunks.push({ at: Date.now() - started, data }),
    onStderr: (data) => errs.push(data),
  });
  const finished = Date.now() - started;
  assert.equal(r.exitCode, 5);
  assert.equal(r.stdout, "line1\nline2\nline3\n");
  assert.equal(r.stderr, "e1\ne2\ne3\n");
  assert.equal(chunks.map((c) => c.data).join(""), r.stdout);
  assert.equal(errs.join(""), r.stderr);
  assert.ok(chunks.length >= 2, `output came in ${chunks.length} piece(s)`);
  assert.ok(chunks[0]!.at < finished - 400, `first output at ${chunks[0]!.at} ms, end at ${finished} ms`);
});

test("streamed run keeps UTF-8 and binary-looking output intact", async () => {
  let seen = "";
  const r = await sbx.commands.run("printf 'h\\303\\251llo \\342\\234\\223\\n'", { onStdout: (d) => (seen += d) });
  assert.equal(r.stdout, "héllo ✓\n");
  assert.equal(seen, r.stdout);
});

test("a command past its timeout throws TimeoutError with its output", async () => {
  const started = Date.now();
  await assert.rejects(sbx.commands.run("echo before; sleep 30", { timeout: 1 }), (err: unknown) => {
    assert.ok(err instanceof TimeoutError);
    assert.equal(err.result?.exitCode, 124);
    assert.equal(err.result?.stdout, "before\n");
    return true;
  });
  assert.ok(Date.now() - started < 10_000);
  await assert.rejects(sbx.commands.run("sleep 30", { timeout: 1, onStdout: () => {} }), TimeoutError);
});

test("background process with stdin: send, close, wait", async () => {
  let live = "";
  const h = await sbx.commands.run("while read -r l; do echo \"got:$l\"; done; echo eof; exit 7", {
    background: true,
    onStdout: (d) => (live += d),
    tag: "reader",
  });
  assert.ok(h instanceof CommandHandle);
  assert.ok(h.pid > 0);
  await h.sendStdin("one\n");
  await eventually(() => live.includes("got:one\n"), "the first echo");
  await h.sendStdin(new TextEncoder().encode("two\n"));
  await eventually(() => live.includes("got:two\n"), "the second echo");

  const listed = await sbx.commands.list();
  const me = listed.find((p) => p.pid === h.pid);
  assert.ok(me, "list shows the background process");
  assert.equal(me.running, true);
  assert.equal(me.exitCode, null);
  assert.equal(me.tag, "reader");
  assert.ok(me.startedAt instanceof Date);

  await h.closeStdin();
  const r = await h.wait();
  assert.equal(r.exitCode, 7);
  assert.equal(r.stdout, "got:one\ngot:two\neof\n");
  assert.equal(h.stdout, r.stdout);
  const done = (await sbx.commands.list()).find((p) => p.pid === h.pid);
  assert.equal(done?.running, false);
  assert.equal(done?.exitCode, 7);
});

test("connect replays a background process's output; kill ends it", async () => {
  const h = await sbx.commands.run("echo ready; exec sleep 600", { background: true });
  const seen: string[] = [];
  const attached = await sbx.commands.connect(h.pid, { onStdout: (d) => seen.push(d) });
  await eventually(() => seen.join("") === "ready\n", "the replayed output");
  assert.equal(await h.kill(), true);
  const r = await attached.wait();
  assert.notEqual(r.exitCode, 0);
  assert.equal(r.stdout, "ready\n");
  const gone = (await sbx.commands.list()).find((p) => p.pid === h.pid);
  assert.equal(gone?.running, false);
});

test("wait without callbacks collects the whole output", async () => {
  const h = await sbx.commands.run("echo a; echo b >&2", { background: true });
  const r = await h.wait();
  assert.deepEqual([r.exitCode, r.stdout, r.stderr], [0, "a\n", "b\n"]);
});

test("signal by name", async () => {
  const h = await sbx.commands.run("trap 'echo term; exit 42' TERM; echo armed; while :; do sleep 0.1; done", {
    background: true,
  });
  let out = "";
  const f = await sbx.commands.connect(h.pid, { onStdout: (d) => (out += d) });
  await eventually(() => out.includes("armed"), "the trap to be set");
  await h.signal("SIGTERM");
  const r = await f.wait();
  assert.equal(r.exitCode, 42);
  assert.match(r.stdout, /term/);
});

test("disconnect stops following; the process runs on", async () => {
  const seen: string[] = [];
  const h = await sbx.commands.run("echo first; read -r x; echo second:$x", {
    background: true,
    onStdout: (d) => seen.push(d),
  });
  await eventually(() => seen.join("") === "first\n", "the first line");
  h.disconnect();
  await assert.rejects(h.wait(), (err: unknown) => err instanceof OpenSandboxError && err.code === "aborted");
  const me = (await sbx.commands.list()).find((p) => p.pid === h.pid);
  assert.equal(me?.running, true, "still running after disconnect");
  await h.sendStdin("x\n");
  const again = await sbx.commands.connect(h.pid);
  const r = await again.wait();
  assert.equal(r.stdout, "first\nsecond:x\n");
  assert.deepEqual(seen, ["first\n"], "no callbacks after disconnect");
});
