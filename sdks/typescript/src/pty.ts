import WebSocket from "ws";
import { DataClient } from "./client.js";
import { OpenSandboxError, errorFromResponse, trueUnlessNotFound } from "./errors.js";
import { toSdkError } from "./transport.js";

export interface PtyOptions {
  /** Columns; default 80. */
  cols?: number;
  /** Rows; default 24. */
  rows?: number;
  /** Called with the terminal's output bytes as they arrive. */
  onData?: (data: Uint8Array) => void;
  /** Shell to run; default `/bin/bash` where it exists, else `/bin/sh`. */
  shell?: string;
  envs?: Record<string, string>;
  cwd?: string;
}

/**
 * An interactive terminal in the sandbox over a WebSocket: binary frames carry
 * the terminal's bytes, text frames JSON control messages.
 */
export class PtyHandle {
  private exitCode?: number;
  private exited: Promise<number>;
  private settle!: { resolve: (code: number) => void; reject: (err: Error) => void };

  /** @internal */
  constructor(
    private readonly data: DataClient,
    /** The session's id; `pty.connect` reattaches to it. */
    readonly sessionId: string,
    private ws: WebSocket,
    onData?: (data: Uint8Array) => void,
  ) {
    this.exited = new Promise<number>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    this.exited.catch(() => {}); // reported by wait()
    ws.on("message", (msg: WebSocket.RawData, isBinary: boolean) => {
      const buf = Array.isArray(msg) ? Buffer.concat(msg) : Buffer.from(msg as ArrayBuffer);
      if (isBinary) {
        onData?.(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
        return;
      }
      try {
        const ctl = JSON.parse(buf.toString("utf8")) as { type?: string; exitCode?: number };
        if (ctl.type === "exit") this.exitCode = Number(ctl.exitCode);
      } catch {
        // not a control message of the contract
      }
    });
    ws.on("close", () => {
      if (this.exitCode !== undefined) this.settle.resolve(this.exitCode);
      else this.settle.reject(new OpenSandboxError("terminal connection closed before the shell exited", { code: "pty_closed" }));
    });
    ws.on("error", () => {}); // "close" follows and settles
  }

  /** Sends keystrokes or bytes to the terminal. */
  async sendInput(data: string | Uint8Array): Promise<void> {
    if (this.ws.readyState !== WebSocket.OPEN) {
      throw new OpenSandboxError("terminal connection is not open", { code: "pty_closed" });
    }
    const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    await new Promise<void>((resolve, reject) =>
      this.ws.send(bytes, { binary: true }, (err) => (err ? reject(toSdkError(err)) : resolve())),
    );
  }

  /** Changes the terminal size; resolves once applied. */
  async resize(cols: number, rows: number): Promise<void> {
    await this.data.json({ method: "POST", path: `/pty/${this.sessionId}/resize`, json: { cols, rows } });
  }

  /** Waits for the shell to exit and answers its exit code. */
  wait(): Promise<number> {
    return this.exited;
  }

  /** Kills the shell and ends the session; false if the session was not found. */
  kill(): Promise<boolean> {
    return trueUnlessNotFound(this.data.json({ method: "DELETE", path: `/pty/${this.sessionId}` }), "pty_not_found");
  }

  /** Closes the WebSocket; the session lives on and `pty.connect` can reattach. */
  disconnect(): void {
    this.ws.close(1000);
  }
}

/** Resolves once the WebSocket is open; refusals become typed errors. */
function opened(ws: WebSocket): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("unexpected-response", (_req, res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (text += d));
      res.on("end", () => {
        let body: { error?: string; code?: string } | undefined;
        try {
          body = JSON.parse(text) as { error?: string; code?: string };
        } catch {
          body = undefined;
        }
        reject(errorFromResponse(res.statusCode ?? 0, body, { sandboxKnown: true }));
        ws.terminate();
      });
    });
    ws.once("error", (err) => reject(toSdkError(err)));
  });
}

/** `sbx.pty`: interactive terminals. */
export class Pty {
  /** @internal */
  constructor(private readonly data: DataClient) {}

  /** Starts a shell on a new terminal and connects to it. */
  async create(opts: PtyOptions = {}): Promise<PtyHandle> {
    const { sessionID } = await this.data.json<{ sessionID: string }>({
      method: "POST",
      path: "/pty",
      json: { cols: opts.cols ?? 80, rows: opts.rows ?? 24, shell: opts.shell, envs: opts.envs, cwd: opts.cwd },
    });
    try {
      return await this.connect(sessionID, { onData: opts.onData });
    } catch (err) {
      await this.data.json({ method: "DELETE", path: `/pty/${sessionID}` }).catch(() => {});
      throw err;
    }
  }

  /** Attaches to an existing session: recent output first, then live. */
  async connect(sessionId: string, opts: { onData?: (data: Uint8Array) => void } = {}): Promise<PtyHandle> {
    const url = await this.data.wsUrl(`/pty/${encodeURIComponent(sessionId)}`);
    const ws = new WebSocket(url, { handshakeTimeout: this.data.api.config.requestTimeoutMs });
    // The handle listens before the socket opens: the first frames may come with the upgrade.
    const handle = new PtyHandle(this.data, sessionId, ws, opts.onData);
    await opened(ws);
    return handle;
  }
}
