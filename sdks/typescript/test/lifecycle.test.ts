import assert from "node:assert/strict";
import { test } from "node:test";
import { NotFoundError, Sandbox, SandboxGoneError } from "opensandbox";
import { eventually, sandbox } from "./helpers.js";

test("create answers a running sandbox with what was asked", async () => {
  const sbx = await sandbox({
    template: "busybox",
    timeout: 119.2, // sent as 120: the server takes whole seconds
    envs: { GREETING: "hello" },
    metadata: { suite: "ts", case: "create" },
    cpuCount: 1,
    memoryMB: 256,
    diskMB: 128,
    networkEnabled: false,
  });
  assert.match(sbx.sandboxId, /^[a-z0-9]+$/);
  const info = await sbx.getInfo();
  assert.equal(info.sandboxId, sbx.sandboxId);
  assert.equal(info.templateId, "busybox");
  assert.equal(info.status, "running");
  assert.deepEqual(info.metadata, { suite: "ts", case: "create" });
  assert.equal(info.cpuCount, 1);
  assert.equal(info.memoryMB, 256);
  assert.equal(info.diskMB, 128);
  assert.equal(info.networkEnabled, false);
  assert.ok(info.startedAt instanceof Date && !Number.isNaN(info.startedAt.getTime()));
  const life = (info.endAt.getTime() - info.startedAt.getTime()) / 1000;
  assert.ok(life > 115 && life < 125, `lifetime ${life}s`);
  // The sandbox's envs reach its commands.
  const r = await sbx.commands.run("echo $GREETING");
  assert.equal(r.stdout, "hello\n");
});

test("list, connect, isRunning, setTimeout and kill", async () => {
  const sbx = await sandbox({ metadata: { case: "list" } });
  const listed = await Sandbox.list();
  const mine = listed.find((s) => s.sandboxId === sbx.sandboxId);
  assert.ok(mine, "list includes the new sandbox");
  assert.deepEqual(mine.metadata, { case: "list" });

  const again = await Sandbox.connect(sbx.sandboxId);
  assert.equal(again.sandboxId, sbx.sandboxId);
  await again.files.write("/tmp/from-connect", "x");
  assert.equal(await sbx.files.read("/tmp/from-connect"), "x");

  assert.equal(await sbx.isRunning(), true);
  const before = (await sbx.getInfo()).endAt.getTime();
  await sbx.setTimeout(1000);
  const after = (await sbx.getInfo()).endAt.getTime();
  assert.ok(after > before + 500_000, `endAt moved from ${before} to ${after}`);
  const remaining = (after - Date.now()) / 1000;
  assert.ok(remaining > 990 && remaining <= 1001, `remaining ${remaining}s`);

  assert.equal(await sbx.kill(), true);
  assert.equal(await sbx.isRunning(), false);
  assert.equal(await sbx.kill(), false, "a second kill finds nothing");
  await assert.rejects(sbx.getInfo(), SandboxGoneError);
  assert.ok(!(await Sandbox.list()).some((s) => s.sandboxId === sbx.sandboxId));
  await assert.rejects(Sandbox.connect(sbx.sandboxId), NotFoundError);
});

test("Sandbox.kill by id", async () => {
  const sbx = await Sandbox.create({ template: "busybox" });
  assert.equal(await Sandbox.kill(sbx.sandboxId), true);
  assert.equal(await Sandbox.kill(sbx.sandboxId), false);
  assert.equal(await sbx.isRunning(), false);
});

test("await using kills the sandbox at the end of the block", async () => {
  let id: string;
  {
    await using sbx = await Sandbox.create({ template: "busybox" });
    id = sbx.sandboxId;
    assert.equal((await sbx.commands.run("echo inside")).stdout, "inside\n");
  }
  await assert.rejects(Sandbox.connect(id), (err: unknown) => {
    assert.ok(err instanceof NotFoundError);
    assert.equal(err.status, 404);
    assert.equal(err.code, "sandbox_not_found");
    return true;
  });
});

test("default template is base (bash and python3 present)", async () => {
  const sbx = await sandbox({ template: undefined });
  assert.equal((await sbx.getInfo()).templateId, "base");
  const r = await sbx.commands.run("bash -c 'echo $BASH_VERSION' && python3 -c 'print(6*7)'");
  assert.equal(r.exitCode, 0);
  assert.match(r.stdout, /^\d+\.\d+.*\n42\n$/);
});

test("a sandbox whose timeout passes is gone", async () => {
  const sbx = await sandbox();
  await sbx.setTimeout(0.4); // rounded up to one second, not down to an invalid 0
  await eventually(async () => !(await sbx.isRunning()), "the timeout to end the sandbox", 15_000);
  await assert.rejects(sbx.commands.run("true"), SandboxGoneError);
  assert.equal(await sbx.kill(), false);
});
