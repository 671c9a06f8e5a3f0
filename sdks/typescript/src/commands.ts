import { DataClient } from "./client.js";
import { wholeSeconds } from "./config.js";
import { NotFoundError, OpenSandboxError, TimeoutError, errorFromResponse, trueUnlessNotFound } from "./errors.js";
import { StreamEvent, readEvents } from "./sse.js";
import { toSdkError } from "./transport.js";

/** Output and exit status of a finished command. */
export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** Set when a stream went past the server's 10 MiB cap (non-streamed runs). */
  stdoutTruncated?: boolean;
  stderrTruncated?: boolean;
  /** Run time on the server (non-streamed runs). */
  durationMs?: number;
  /** The sandbox ran out of memory and the kernel killed the command (exit code 137; non-streamed runs). */
  oomKilled?: boolean;
}

export interface CommandOptions {
  /** Arguments: with them, `cmd` and `args` run as argv; without, `cmd` runs through `/bin/sh -c`. */
  args?: string[];
  /** Environment variables, merged over the sandbox's. */
  envs?: Record<string, string>;
  /** Working directory. */
  cwd?: string;
  /**
   * Seconds before the process group is killed (rounded up to whole seconds);
   * default 60 (foreground) or none (background). Running out throws a TimeoutError whose `result` holds the output.
   */
  timeout?: number;
  /** Written to the process, then its stdin is closed. */
  stdin?: string;
  /** Called with each piece of stdout as it arrives (streams the output). */
  onStdout?: (data: string) => void;
  /** Called with each piece of stderr as it arrives (streams the output). */
  onStderr?: (data: string) => void;
  /** A label shown by `commands.list()`. */
  tag?: string;
  /** Aborting it ends a foreground run (the server then kills the process). */
  signal?: AbortSignal;
}

/** A process started with `background` or `stream`, as `commands.list()` shows it. */
export interface ProcessInfo {
  pid: number;
  cmd: string;
  args?: string[];
  cwd?: string;
  tag?: string;
  startedAt?: Date;
  running: boolean;
  exitCode: number | null;
}

/** Accumulates a process's output from stream events and calls the callbacks. */
class OutputCollector {
  stdout = "";
  stderr = "";
  private out = new TextDecoder();
  private err = new TextDecoder();
  exitCode?: number;
  timedOut = false;
  pid?: number;

  constructor(private onStdout?: (d: string) => void, private onStderr?: (d: string) => void) {}

  /** Handles one event; answers true at the end of the stream. */
  take(ev: StreamEvent): boolean {
    switch (ev.type) {
      case "start":
        this.pid = Number(ev.pid);
        return false;
      case "stdout":
      case "stderr":
        this.emit(ev.type, Buffer.from(String(ev.data ?? ""), "base64"));
        return false;
      case "exit":
        this.flush();
        this.exitCode = Number(ev.exitCode);
        this.timedOut = ev.timedOut === true;
        return true;
      case "error":
        this.flush();
        throw streamError(ev);
      default:
        return false;
    }
  }

  /** Decodes bytes of one stream (UTF-8 split across events is kept whole); no bytes flushes. */
  private emit(which: "stdout" | "stderr", bytes?: Uint8Array): void {
    const dec = which === "stdout" ? this.out : this.err;
    const s = bytes ? dec.decode(bytes, { stream: true }) : dec.decode();
    if (!s) return;
    this[which] += s;
    (which === "stdout" ? this.onStdout : this.onStderr)?.(s);
  }

  private flush(): void {
    this.emit("stdout");
    this.emit("stderr");
  }

  result(): CommandResult {
    if (this.exitCode === undefined) {
      throw new OpenSandboxError("process stream ended before the process exited", { code: "stream_ended" });
    }
    return finish({ exitCode: this.exitCode, stdout: this.stdout, stderr: this.stderr }, this.timedOut);
  }
}

const codeStatus: Record<string, number> = {
  invalid_argument: 400,
  unauthenticated: 401,
  token_expired: 401,
  forbidden: 403,
  sandbox_not_found: 404,
  process_not_found: 404,
  file_not_found: 404,
  quota_exceeded: 429,
  agent_unreachable: 503,
};

/** The typed error for an `{"type":"error"}` stream event. */
export function streamError(ev: StreamEvent): OpenSandboxError {
  const code = typeof ev.code === "string" ? ev.code : "stream_error";
  const msg = typeof ev.error === "string" ? ev.error : "stream failed";
  const status = codeStatus[code];
  if (status) return errorFromResponse(status, { error: msg, code }, { sandboxKnown: true });
  return new OpenSandboxError(msg, { code });
}

function finish(r: CommandResult, timedOut: boolean | undefined): CommandResult {
  if (timedOut) {
    const err = new TimeoutError(`command timed out (exit code ${r.exitCode})`, { code: "command_timeout" });
    err.result = { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr };
    throw err;
  }
  return r;
}

/**
 * A process running in the background. Its output can be followed with
 * callbacks; `wait()` answers the result once it exits.
 */
export class CommandHandle {
  private collector: OutputCollector;
  private following?: Promise<CommandResult>;
  private abort?: AbortController;

  /** @internal */
  constructor(
    private readonly data: DataClient,
    /** Process id inside the sandbox. */
    readonly pid: number,
    onStdout?: (d: string) => void,
    onStderr?: (d: string) => void,
  ) {
    this.collector = new OutputCollector(onStdout, onStderr);
  }

  /** Everything the process printed on stdout so far (while followed). */
  get stdout(): string {
    return this.collector.stdout;
  }

  /** Everything the process printed on stderr so far (while followed). */
  get stderr(): string {
    return this.collector.stderr;
  }

  /**
   * Starts following the process's output stream (replay, then live) without
   * waiting for it to open: a quiet process's stream may answer only with its
   * first output or keepalive. Failures are reported by `wait()`.
   * @internal
   */
  follow(): void {
    if (this.following) return;
    const abort = (this.abort = new AbortController());
    const c = this.collector;
    this.following = (async () => {
      const { res, done } = await this.data.send({
        method: "GET",
        path: `/processes/${this.pid}/stream`,
        headers: { Accept: "text/event-stream" },
        signal: abort.signal,
      });
      done();
      try {
        for await (const ev of readEvents(res.body!)) if (c.take(ev)) break;
      } catch (err) {
        throw toSdkError(err);
      }
      return c.result();
    })();
    this.following.catch(() => {}); // reported by wait()
  }

  /** Waits for the process to exit; throws TimeoutError if its timeout killed it. */
  wait(): Promise<CommandResult> {
    this.follow();
    return this.following!;
  }

  /** Stops following the output; the process keeps running. */
  disconnect(): void {
    this.abort?.abort();
  }

  /** Sends SIGKILL to the process group; false if the process was not found. */
  kill(): Promise<boolean> {
    return trueUnlessNotFound(this.data.json({ method: "DELETE", path: `/processes/${this.pid}` }), "process_not_found");
  }

  /** Sends a signal by name (`SIGTERM`) or number. */
  async signal(signal: string | number): Promise<void> {
    await this.data.json({ method: "POST", path: `/processes/${this.pid}/signal`, json: { signal: String(signal) } });
  }

  /** Writes to the process's stdin. */
  async sendStdin(data: string | Uint8Array): Promise<void> {
    await this.data.json({ method: "POST", path: `/processes/${this.pid}/stdin`, body: data });
  }

  /** Closes the process's stdin (it reads end of file). */
  async closeStdin(): Promise<void> {
    await this.data.json({ method: "DELETE", path: `/processes/${this.pid}/stdin` });
  }
}

interface ServerProcessInfo {
  pid: number;
  cmd: string;
  args?: string[];
  cwd?: string;
  tag?: string;
  startedAt?: string;
  running: boolean;
  exitCode: number | null;
}

interface ServerResult extends CommandResult {
  timedOut?: boolean;
}

/** `sbx.commands`: run commands and manage processes in the sandbox. */
export class Commands {
  /** @internal */
  constructor(private readonly data: DataClient) {}

  /** Starts a command in the background; the handle follows it. */
  run(cmd: string, opts: CommandOptions & { background: true }): Promise<CommandHandle>;
  /** Runs a command to completion. */
  run(cmd: string, opts?: CommandOptions & { background?: false }): Promise<CommandResult>;
  run(cmd: string, opts?: CommandOptions & { background?: boolean }): Promise<CommandResult | CommandHandle>;
  async run(cmd: string, opts: CommandOptions & { background?: boolean } = {}): Promise<CommandResult | CommandHandle> {
    const body = {
      cmd,
      args: opts.args,
      envs: opts.envs,
      cwd: opts.cwd,
      timeout: wholeSeconds(opts.timeout),
      stdin: opts.stdin,
      tag: opts.tag,
    };
    if (opts.background) {
      const { pid } = await this.data.json<{ pid?: number }>({ method: "POST", path: "/commands", json: { ...body, background: true } });
      if (typeof pid !== "number") {
        throw new OpenSandboxError("the server ran the command in the foreground: it has no background processes", {
          code: "unsupported",
        });
      }
      const h = new CommandHandle(this.data, pid, opts.onStdout, opts.onStderr);
      if (opts.onStdout || opts.onStderr) h.follow();
      return h;
    }
    const limitMs = (opts.timeout ?? 60) * 1000;
    // Callbacks need the stream; so do long runs, whose keepalives hold the connection.
    if (opts.onStdout || opts.onStderr || limitMs > 240_000) {
      return this.runStreamed(body, opts);
    }
    const r = await this.data.json<ServerResult>({
      method: "POST",
      path: "/commands",
      json: body,
      timeoutMs: limitMs + this.data.api.config.requestTimeoutMs,
      signal: opts.signal,
    });
    const { timedOut, ...rest } = r;
    return finish(rest, timedOut);
  }

  private async runStreamed(body: object, opts: CommandOptions): Promise<CommandResult> {
    const { res, done } = await this.data.send({
      method: "POST",
      path: "/commands",
      json: { ...body, stream: true },
      headers: { Accept: "text/event-stream" },
      timeoutMs: this.data.api.config.requestTimeoutMs,
      signal: opts.signal,
    });
    done();
    if (!(res.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
      // A server without streaming answered the plain result: replay it to the callbacks.
      const r = (await res.json()) as ServerResult;
      if (r.stdout) opts.onStdout?.(r.stdout);
      if (r.stderr) opts.onStderr?.(r.stderr);
      const { timedOut, ...rest } = r;
      return finish(rest, timedOut);
    }
    const c = new OutputCollector(opts.onStdout, opts.onStderr);
    try {
      for await (const ev of readEvents(res.body!)) if (c.take(ev)) break;
    } catch (err) {
      throw toSdkError(err);
    }
    return c.result();
  }

  /** Processes started with `background` or streamed (finished ones for a while). */
  async list(): Promise<ProcessInfo[]> {
    const ps = await this.data.json<ServerProcessInfo[]>({ method: "GET", path: "/processes" });
    return (ps ?? []).map((p) => ({ ...p, startedAt: p.startedAt ? new Date(p.startedAt) : undefined }));
  }

  /**
   * Follows a running (or recently finished) process: replay of its output,
   * then live. NotFoundError if the sandbox has no such process.
   */
  async connect(pid: number, opts: { onStdout?: (d: string) => void; onStderr?: (d: string) => void } = {}): Promise<CommandHandle> {
    if (!(await this.list()).some((p) => p.pid === pid)) {
      throw new NotFoundError(`process ${pid} not found`, { status: 404, code: "process_not_found" });
    }
    const h = new CommandHandle(this.data, pid, opts.onStdout, opts.onStderr);
    h.follow();
    return h;
  }
}
