// Sandbox tokens and the answers the combined server never gives, against the
// STUB control plane of stub-control-plane.ts (the real one is being built).
import assert from "node:assert/strict";
import { after, afterEach, before, mock, test } from "node:test";
import {
  AuthenticationError,
  ConnectionError,
  OpenSandboxError,
  RateLimitError,
  Sandbox,
  TimeoutError,
} from "opensandbox";
import { StubControlPlane } from "./stub-control-plane.js";

let stub: StubControlPlane;
let opts: { apiUrl: string; apiKey: string };

before(async () => {
  stub = new StubControlPlane();
  await stub.start();
  opts = { apiUrl: stub.url, apiKey: stub.apiKey };
});
after(() => stub.stop());
afterEach(() => {
  mock.timers.reset();
  stub.reset();
});

test("data calls go to connectURL with the token, lifecycle calls to the API with the key", async () => {
  const sbx = await Sandbox.create({ ...opts, template: "busybox" });
  const r = await sbx.commands.run("echo");
  assert.equal(r.stdout, "token tok-1\n");
  const [cmd] = stub.seen(/POST \/worker\/sandboxes\/sbx1\/commands/);
  assert.equal(cmd?.bearer, "tok-1");
  assert.equal(cmd?.apiKey, undefined, "the API key does not travel to the worker");
  await sbx.getInfo();
  await sbx.kill();
  for (const lc of stub.seen(/^(GET|DELETE) \/sandboxes\/sbx1$/)) {
    assert.equal(lc.apiKey, stub.apiKey);
    assert.equal(lc.bearer, undefined);
  }
  assert.equal(stub.seen(/GET|DELETE/).length, 2);
  assert.equal(stub.seen(/\/token$/).length, 0, "no refresh while the token is fresh");
});

test("the token is refreshed before tokenExpiresAt", async () => {
  mock.timers.enable({ apis: ["Date"], now: Date.now() });
  stub.tokenLifeMs = 400_000; // renewed a minute before the end
  const sbx = await Sandbox.create({ ...opts, template: "busybox" });
  assert.equal((await sbx.commands.run("x")).stdout, "token tok-1\n");
  mock.timers.tick(300_000); // 100 s left: still fresh
  assert.equal((await sbx.commands.run("x")).stdout, "token tok-1\n");
  mock.timers.tick(50_000); // 50 s left: inside the margin
  assert.equal((await sbx.commands.run("x")).stdout, "token tok-2\n");
  const refresh = stub.seen(/POST \/sandboxes\/sbx1\/token/);
  assert.equal(refresh.length, 1);
  assert.equal(refresh[0]!.apiKey, stub.apiKey, "the refresh goes to the control plane with the API key");
  // Concurrent calls at the next expiry share one refresh.
  mock.timers.tick(400_000);
  const outs = await Promise.all([1, 2, 3, 4].map(() => sbx.commands.run("x")));
  assert.deepEqual(outs.map((o) => o.stdout), Array(4).fill("token tok-3\n"));
  assert.equal(stub.seen(/\/token$/).length, 2);
});

test("a token_expired answer refreshes the token and retries once", async () => {
  const sbx = await Sandbox.create({ ...opts, template: "busybox" });
  stub.expireAll(); // e.g. the clocks disagree
  assert.equal((await sbx.commands.run("x")).stdout, "token tok-2\n");
  assert.equal(stub.seen(/\/token$/).length, 1);
  assert.equal(stub.seen(/\/commands$/).length, 2);
});

test("connect asks for a token when the answer names a worker without one", async () => {
  stub.tokenOnCreate = false;
  const sbx = await Sandbox.connect("sbx1", opts);
  assert.equal(stub.seen(/POST \/sandboxes\/sbx1\/token/).length, 1);
  assert.equal((await sbx.commands.run("x")).stdout, "token tok-1\n");
});

test("the PTY WebSocket carries the token as ?token=", async () => {
  const sbx = await Sandbox.create({ ...opts, template: "busybox" });
  let out = "";
  const pty = await sbx.pty.create({ onData: (d) => (out += Buffer.from(d).toString()) });
  await pty.sendInput("exit\n");
  assert.equal(await pty.wait(), 9);
  assert.equal(out, "stub terminal\r\n");
  const [ws] = stub.seen(/GET \/worker\/sandboxes\/sbx1\/pty\/pty1/);
  assert.equal(ws?.query.get("token"), "tok-1");
});

test("a refused WebSocket upgrade is a typed error", async () => {
  const sbx = await Sandbox.create({ ...opts, template: "busybox" });
  stub.expireAll();
  await assert.rejects(sbx.pty.connect("pty1"), (err: unknown) => {
    assert.ok(err instanceof AuthenticationError);
    assert.equal(err.status, 401);
    assert.equal(err.code, "token_expired");
    return true;
  });
});

test("429 is a RateLimitError", async () => {
  stub.createAnswer = { status: 429, body: { error: "sandbox quota reached", code: "quota_exceeded" } };
  await assert.rejects(Sandbox.create({ ...opts, template: "busybox" }), (err: unknown) => {
    assert.ok(err instanceof RateLimitError);
    assert.ok(err instanceof OpenSandboxError);
    assert.equal(err.status, 429);
    assert.equal(err.code, "quota_exceeded");
    assert.equal(err.message, "sandbox quota reached");
    return true;
  });
});

test("503 is an OpenSandboxError with the server's code", async () => {
  stub.createAnswer = { status: 503, body: { error: "no worker", code: "no_worker_available" } };
  await assert.rejects(Sandbox.create({ ...opts, template: "busybox" }), (err: unknown) => {
    assert.ok(err instanceof OpenSandboxError);
    assert.equal(err.status, 503);
    assert.equal(err.code, "no_worker_available");
    return true;
  });
});

test("an answer that never comes is a TimeoutError after requestTimeoutMs", async () => {
  stub.hang.add("/sandboxes");
  const started = Date.now();
  await assert.rejects(Sandbox.list({ ...opts, requestTimeoutMs: 300 }), (err: unknown) => {
    assert.ok(err instanceof TimeoutError);
    assert.equal(err.status, 0);
    assert.equal(err.code, "request_timeout");
    return true;
  });
  const took = Date.now() - started;
  assert.ok(took >= 290 && took < 5_000, `took ${took} ms`);
});

test("an unreachable server is a ConnectionError, not a bare fetch error", async () => {
  const closed = new StubControlPlane();
  await closed.start();
  const url = closed.url;
  await closed.stop();
  await assert.rejects(Sandbox.list({ apiUrl: url, apiKey: "k" }), (err: unknown) => {
    assert.ok(err instanceof ConnectionError);
    assert.ok(err instanceof OpenSandboxError);
    assert.equal(err.code, "connection_error");
    assert.match(err.message, /GET \/sandboxes/);
    return true;
  });
});

test("kill answers false only when the server says the sandbox is gone", async () => {
  const sbx = await Sandbox.create({ ...opts, template: "busybox" });
  assert.equal(await sbx.kill(), true);
  for (const [status, code] of [[404, "sandbox_not_found"], [410, "gone"]] as const) {
    stub.deleteAnswer = { status, body: { error: "no such sandbox", code } };
    assert.equal(await sbx.kill(), false, `${status} ${code}`);
    assert.equal(await Sandbox.kill("sbx1", opts), false, `Sandbox.kill on ${status} ${code}`);
  }
  // A 404 that does not name the sandbox (a wrong API URL) and a 500 are errors.
  stub.deleteAnswer = { status: 404, body: { error: "no such route", code: "not_found" } };
  await assert.rejects(sbx.kill(), (err: unknown) => err instanceof OpenSandboxError && err.code === "not_found");
  stub.deleteAnswer = { status: 500, body: { error: "database down", code: "internal" } };
  await assert.rejects(Sandbox.kill("sbx1", opts), (err: unknown) => err instanceof OpenSandboxError && err.status === 500);
});

test("timeouts are sent as whole seconds, rounded up", async () => {
  const sbx = await Sandbox.create({ ...opts, template: "busybox", timeout: 1.5 });
  await sbx.setTimeout(0.4);
  await sbx.setTimeout(30);
  await sbx.commands.run("x", { timeout: 0.4 });
  await sbx.commands.run("x", { timeout: 2.1, background: true });
  await sbx.commands.run("x");
  const sent = stub.requests.filter((r) => r.method === "POST").map((r) => `${r.path} ${r.body?.timeout}`);
  assert.deepEqual(sent, [
    "/sandboxes 2",
    "/sandboxes/sbx1/timeout 1",
    "/sandboxes/sbx1/timeout 30",
    "/worker/sandboxes/sbx1/commands 1",
    "/worker/sandboxes/sbx1/commands 3",
    "/worker/sandboxes/sbx1/commands undefined",
  ]);
});

test("region and strictRegion travel in the create body; no_capacity keeps its code", async () => {
  await Sandbox.create({ ...opts, template: "busybox", region: "eu-west-1", strictRegion: true });
  await Sandbox.create({ ...opts, template: "busybox", region: "eu-west-1" });
  const bodies = stub.requests.filter((r) => r.method === "POST" && r.path === "/sandboxes").map((r) => r.body);
  assert.equal(bodies[0]?.region, "eu-west-1");
  assert.equal(bodies[0]?.strictRegion, true);
  assert.equal(bodies[1]?.strictRegion, undefined);
  stub.createAnswer = { status: 503, body: { error: "no healthy capacity in region", code: "no_capacity" } };
  await assert.rejects(Sandbox.create({ ...opts, template: "busybox", region: "eu-west-1", strictRegion: true }), (err: unknown) => {
    assert.ok(err instanceof OpenSandboxError);
    assert.equal(err.status, 503);
    assert.equal(err.code, "no_capacity");
    return true;
  });
});
