/**
 * A Server-Sent Events reader for the streams of the wire contract: each event's
 * `data:` lines joined form one JSON object with a `type` field.
 */
export interface StreamEvent {
  type: string;
  [key: string]: unknown;
}

/** Yields the JSON object of each event of an SSE body; comments are skipped. */
export async function* readEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<StreamEvent> {
  const decoder = new TextDecoder();
  const reader = body.getReader();
  let buf = "";
  let data: string[] = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        let line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.endsWith("\r")) line = line.slice(0, -1);
        if (line === "") {
          if (data.length > 0) {
            const ev = parseEvent(data.join("\n"));
            data = [];
            if (ev) yield ev;
          }
          continue;
        }
        if (line.startsWith(":")) continue; // keepalive or other comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "data") data.push(value);
      }
    }
    // Be lenient with a stream cut after its last line: take that line too.
    const last = buf.endsWith("\r") ? buf.slice(0, -1) : buf;
    if (last.startsWith("data:")) data.push(last.slice(last.startsWith("data: ") ? 6 : 5));
    if (data.length > 0) {
      const ev = parseEvent(data.join("\n"));
      if (ev) yield ev;
    }
  } finally {
    reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

function parseEvent(text: string): StreamEvent | undefined {
  try {
    const v = JSON.parse(text) as unknown;
    if (v && typeof v === "object" && typeof (v as StreamEvent).type === "string") return v as StreamEvent;
  } catch {
    // not JSON: not an event of the contract
  }
  return undefined;
}
