import assert from "node:assert/strict";
import { before, test } from "node:test";
import { NotFoundError, type Sandbox } from "opensandbox";
import { eventually, sandbox } from "./helpers.js";

let sbx: Sandbox;
before(async () => {
  sbx = await sandbox({ template: "base" });
});

/** Collects a terminal's output as text. */
function screen() {
  const dec = new TextDecoder();
  const s = { text: "", onData: (d: Uint8Array) => (s.text += dec.decode(d, { stream: true })) };
  return s;
}

test("PTY: stty size follows resize; exit code comes back", async () => {
  const out = screen();
  const pty = await sbx.pty.create({ cols: 80, rows: 24, onData: out.onData });
  assert.ok(pty.sessionId);
  await pty.sendInput("stty size; echo $TERM\n");
  await eventually(() => /[\r\n]24 80\r\nxterm-256color\r\n/.test(out.text), "stty size to print 24 80");
  await pty.resize(120, 40);
  await pty.sendInput(new TextEncoder().encode("stty size\n"));
  await eventually(() => /[\r\n]40 120\r\n/.test(out.text), "stty size to print 40 120");
  // A terminal: the shell knows it is on one.
  await pty.sendInput("tty >/dev/null && echo is-a-tty\n");
  await eventually(() => /[\r\n]is-a-tty\r\n/.test(out.text), "the tty check");
  await pty.sendInput("exit 3\n");
  assert.equal(await pty.wait(), 3);
});

test("PTY: reconnect replays scrollback; kill ends the session", async () => {
  const first = screen();
  const pty = await sbx.pty.create({ onData: first.onData });
  await pty.sendInput("echo marker-$((6*7))\n");
  await eventually(() => first.text.includes("marker-42"), "the marker");
  pty.disconnect();

  const second = screen();
  const again = await sbx.pty.connect(pty.sessionId, { onData: second.onData });
  await eventually(() => second.text.includes("marker-42"), "the scrollback replay");
  await again.sendInput("echo still-$((1+1))\n");
  await eventually(() => second.text.includes("still-2"), "the live output after reconnect");

  assert.equal(await again.kill(), true);
  const code = await again.wait();
  assert.notEqual(code, 0);
  assert.equal(await again.kill(), false, "the session is gone");
  await assert.rejects(sbx.pty.connect(pty.sessionId), NotFoundError);
});
