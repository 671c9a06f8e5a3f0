import assert from "node:assert/strict";
import { before, test } from "node:test";
import {
  AuthenticationError,
  InvalidArgumentError,
  NotFoundError,
  OpenSandboxError,
  Sandbox,
  SandboxGoneError,
  TimeoutError,
} from "opensandbox";
import { sandbox } from "./helpers.js";

/** Asserts that p rejects with an instance of cls carrying status and code. */
async function rejectsWith(p: Promise<unknown>, cls: new (...a: never[]) => OpenSandboxError, status: number, code: string) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof cls, `${String(err)} is a ${cls.name}`);
    assert.ok(err instanceof OpenSandboxError);
    assert.equal(err.status, status);
    assert.equal(err.code, code);
    assert.ok(err.message.length > 0);
    assert.equal(err.name, cls.name);
    return true;
  });
}

let sbx: Sandbox;
before(async () => {
  sbx = await sandbox();
});

test("AuthenticationError for a missing or wrong API key", async () => {
  await rejectsWith(Sandbox.list({ apiKey: "wrong-key" }), AuthenticationError, 403, "forbidden");
  await rejectsWith(Sandbox.list({ apiKey: "" }), AuthenticationError, 401, "unauthenticated");
  await rejectsWith(Sandbox.connect(sbx.sandboxId, { apiKey: "wrong-key" }), AuthenticationError, 403, "forbidden");
});

test("NotFoundError for an unknown sandbox or file", async () => {
  await rejectsWith(Sandbox.connect("nosuchsandbox0"), NotFoundError, 404, "sandbox_not_found");
  await rejectsWith(sbx.files.read("/no/such/file"), NotFoundError, 404, "file_not_found");
  await rejectsWith(sbx.files.stat("/no/such/file"), NotFoundError, 404, "file_not_found");
  await rejectsWith(sbx.files.list("/no/such/dir"), NotFoundError, 404, "file_not_found");
  await rejectsWith(sbx.commands.connect(999_999), NotFoundError, 404, "process_not_found");
  await rejectsWith(sbx.pty.connect("no-such-session"), NotFoundError, 404, "pty_not_found");
});

test("InvalidArgumentError for requests the server refuses", async () => {
  await rejectsWith(Sandbox.create({ template: "busybox", cpuCount: 99 }), InvalidArgumentError, 400, "invalid_argument");
  await rejectsWith(Sandbox.create({ template: "no-such-template" }), InvalidArgumentError, 400, "template_not_found");
  await rejectsWith(sbx.setTimeout(0), InvalidArgumentError, 400, "invalid_argument");
  await rejectsWith(sbx.files.list("/tmp", { depth: 0 }), InvalidArgumentError, 400, "invalid_argument");
  await rejectsWith(sbx.files.read(""), InvalidArgumentError, 400, "invalid_argument");
});

test("TimeoutError when a command runs out of time", async () => {
  await rejectsWith(sbx.commands.run("sleep 20", { timeout: 1 }), TimeoutError, 0, "command_timeout");
});

test("SandboxGoneError for every call on a killed sandbox", async () => {
  const gone = await Sandbox.create({ template: "busybox" });
  await gone.kill();
  await rejectsWith(gone.commands.run("true"), SandboxGoneError, 404, "sandbox_not_found");
  await rejectsWith(gone.files.read("/etc/hostname"), SandboxGoneError, 404, "sandbox_not_found");
  await rejectsWith(gone.files.write("/tmp/x", "x"), SandboxGoneError, 404, "sandbox_not_found");
  await rejectsWith(gone.files.exists("/etc"), SandboxGoneError, 404, "sandbox_not_found");
  await rejectsWith(gone.setTimeout(60), SandboxGoneError, 404, "sandbox_not_found");
  await rejectsWith(gone.getInfo(), SandboxGoneError, 404, "sandbox_not_found");
  // A SandboxGoneError is also a NotFoundError.
  await assert.rejects(gone.files.stat("/"), NotFoundError);
});
