import assert from "node:assert/strict";
import { test } from "node:test";
import { readEvents } from "../dist/sse.js";

function streamOf(parts: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(c) {
      for (const p of parts) c.enqueue(enc.encode(p));
      c.close();
    },
  });
}

test("SSE reader: split chunks, CRLF, comments and multi-line data", async () => {
  const text =
    'event: start\ndata: {"type":"start","pid":42}\n\n' +
    ": keepalive\n\n" +
    'event: stdout\r\ndata: {"type":"stdout",\r\ndata: "data":"aGk="}\r\n\r\n' +
    "data: not json\n\n" +
    'data: {"type":"exit","exitCode":0}';
  // Cut into 3-byte pieces, so fields and even the multi-byte split fall across chunks.
  const parts: string[] = [];
  for (let i = 0; i < text.length; i += 3) parts.push(text.slice(i, i + 3));
  const events = [];
  for await (const ev of readEvents(streamOf(parts))) events.push(ev);
  assert.deepEqual(events, [
    { type: "start", pid: 42 },
    { type: "stdout", data: "aGk=" },
    { type: "exit", exitCode: 0 },
  ]);
});
