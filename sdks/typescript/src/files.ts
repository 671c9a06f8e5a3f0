import { createReadStream, createWriteStream } from "node:fs";
import { stat as statLocal } from "node:fs/promises";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { DataClient } from "./client.js";
import { NotFoundError, OpenSandboxError, SandboxGoneError } from "./errors.js";
import { streamError } from "./commands.js";
import { readEvents } from "./sse.js";
import { toSdkError } from "./transport.js";

/** One file system entry. */
export interface EntryInfo {
  name: string;
  path: string;
  isDir: boolean;
  size: number;
  /** Octal permission bits, e.g. `"0644"`. */
  mode: string;
  modTime: Date;
  symlinkTarget?: string;
}

/** Called as bytes go by: `total` is known for files and byte data, not for streams. */
export type ProgressCallback = (bytes: number, total?: number) => void;

/** Data `files.write` accepts; streams are sent as they are read, never held whole. */
export type WriteData = string | Uint8Array | ArrayBuffer | Blob | ReadableStream<Uint8Array> | Readable;

export interface WriteOptions {
  /** Permission bits, e.g. `0o755` or `"0755"`. */
  mode?: number | string;
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
}

export interface ReadOptions {
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
}

/**
 * A file system change seen by `files.watch`; `overflow` (with an empty path)
 * says the kernel dropped events, so rescan if that matters.
 */
export interface FilesystemEvent {
  type: "create" | "write" | "remove" | "rename" | "chmod" | "overflow";
  path: string;
  isDir: boolean;
}

/** Stops a watch. */
export interface WatchHandle {
  stop(): void;
}

interface ServerEntry extends Omit<EntryInfo, "modTime"> {
  modTime: string;
}

function entry(e: ServerEntry): EntryInfo {
  return { ...e, modTime: new Date(e.modTime) };
}

const CHUNK = 1 << 20;

/** Counts bytes going through a stream. */
function counting(total: number | undefined, onProgress: ProgressCallback): TransformStream<Uint8Array, Uint8Array> {
  let n = 0;
  return new TransformStream({
    transform(chunk, ctl) {
      n += chunk.byteLength;
      ctl.enqueue(chunk);
      onProgress(n, total);
    },
  });
}

/** Byte data as a stream of 1 MiB slices, so progress can be reported. */
function sliced(data: Uint8Array): ReadableStream<Uint8Array> {
  let off = 0;
  return new ReadableStream({
    pull(ctl) {
      if (off >= data.byteLength) return ctl.close();
      ctl.enqueue(data.subarray(off, off + CHUNK));
      off += CHUNK;
    },
  });
}

/** `sbx.files`: the sandbox's file system. */
export class Files {
  /** @internal */
  constructor(private readonly data: DataClient) {}

  /** Reads a file as UTF-8 text. */
  read(path: string, opts?: ReadOptions & { format?: "text" }): Promise<string>;
  /** Reads a file as bytes. */
  read(path: string, opts: ReadOptions & { format: "bytes" }): Promise<Uint8Array>;
  /** Opens a file as a stream of bytes (the download goes on as it is read). */
  read(path: string, opts: ReadOptions & { format: "stream" }): Promise<ReadableStream<Uint8Array>>;
  async read(
    path: string,
    opts: ReadOptions & { format?: "text" | "bytes" | "stream" } = {},
  ): Promise<string | Uint8Array | ReadableStream<Uint8Array>> {
    const { res, done } = await this.data.send({
      method: "GET",
      path: "/files",
      query: { path },
      timeoutMs: this.data.api.config.requestTimeoutMs,
      signal: opts.signal,
    });
    done();
    let body: ReadableStream<Uint8Array> = res.body ?? new ReadableStream({ start: (c) => c.close() });
    if (opts.onProgress) {
      const len = Number(res.headers.get("content-length"));
      body = body.pipeThrough(counting(Number.isFinite(len) && len >= 0 ? len : undefined, opts.onProgress));
    }
    if (opts.format === "stream") return body;
    try {
      const bytes = new Uint8Array(await new Response(body).arrayBuffer());
      return opts.format === "bytes" ? bytes : new TextDecoder().decode(bytes);
    } catch (err) {
      throw toSdkError(err, { method: "GET", path });
    }
  }

  /**
   * Writes a file (parents are created). Streams and Node Readables are sent as
   * they are read, so files of any size pass without being held in memory.
   */
  async write(path: string, data: WriteData, opts: WriteOptions = {}): Promise<EntryInfo> {
    let body: string | Uint8Array | ReadableStream<Uint8Array>;
    let total: number | undefined;
    if (typeof data === "string") body = new TextEncoder().encode(data);
    else if (data instanceof Uint8Array) body = data;
    else if (data instanceof ArrayBuffer) body = new Uint8Array(data);
    else if (data instanceof Blob) {
      total = data.size;
      body = data.stream() as ReadableStream<Uint8Array>;
    } else if (data instanceof ReadableStream) body = data;
    else if (data instanceof Readable) body = Readable.toWeb(data) as ReadableStream<Uint8Array>;
    else throw new OpenSandboxError("files.write: unsupported data type", { code: "invalid_argument" });

    if (body instanceof Uint8Array) total = body.byteLength;
    if (opts.onProgress) {
      const stream = body instanceof ReadableStream ? body : sliced(body as Uint8Array);
      body = stream.pipeThrough(counting(total, opts.onProgress));
    }
    const mode = typeof opts.mode === "number" ? "0" + opts.mode.toString(8) : opts.mode;
    const e = await this.data.json<ServerEntry>({
      method: "PUT",
      path: "/files",
      query: { path, mode },
      body,
      timeoutMs: 0, // the answer comes after the whole upload
      signal: opts.signal,
    });
    return entry(e);
  }

  /** Uploads a local file, streamed. */
  async upload(localPath: string, path: string, opts: WriteOptions = {}): Promise<EntryInfo> {
    const size = (await statLocal(localPath)).size;
    const src = Readable.toWeb(createReadStream(localPath, { highWaterMark: CHUNK })) as ReadableStream<Uint8Array>;
    const onProgress = opts.onProgress;
    return this.write(path, onProgress ? src.pipeThrough(counting(size, onProgress)) : src, { ...opts, onProgress: undefined });
  }

  /** Downloads a file to a local path, streamed. */
  async download(path: string, localPath: string, opts: ReadOptions = {}): Promise<void> {
    const body = await this.read(path, { ...opts, format: "stream" });
    try {
      await pipeline(Readable.fromWeb(body as import("node:stream/web").ReadableStream<Uint8Array>), createWriteStream(localPath));
    } catch (err) {
      throw toSdkError(err, { method: "GET", path });
    }
  }

  /** Lists a directory; `depth` > 1 descends into subdirectories. */
  async list(path: string, opts: { depth?: number } = {}): Promise<EntryInfo[]> {
    const es = await this.data.json<ServerEntry[]>({ method: "GET", path: "/files/list", query: { path, depth: opts.depth } });
    return (es ?? []).map(entry);
  }

  /** Describes a file or directory; NotFoundError if it does not exist. */
  async stat(path: string): Promise<EntryInfo> {
    return entry(await this.data.json<ServerEntry>({ method: "GET", path: "/files/stat", query: { path } }));
  }

  /** True if the path exists. */
  async exists(path: string): Promise<boolean> {
    try {
      await this.stat(path);
      return true;
    } catch (err) {
      if (err instanceof NotFoundError && !(err instanceof SandboxGoneError)) return false;
      throw err;
    }
  }

  /** Creates a directory and its parents (`mkdir -p`). */
  async makeDir(path: string): Promise<EntryInfo> {
    return entry(await this.data.json<ServerEntry>({ method: "POST", path: "/files/mkdir", query: { path } }));
  }

  /** Removes a file or a directory with everything in it. */
  async remove(path: string): Promise<void> {
    await this.data.json({ method: "DELETE", path: "/files", query: { path } });
  }

  /** Renames (moves) a file or directory. */
  async rename(from: string, to: string): Promise<EntryInfo> {
    return entry(await this.data.json<ServerEntry>({ method: "POST", path: "/files/rename", json: { from, to } }));
  }

  /**
   * Watches a directory: resolves once the watch is in place, then calls
   * `onEvent` for each change until `stop()`. `onExit` hears how the stream ended
   * (an error, or nothing after `stop()` or a server close).
   */
  async watch(
    path: string,
    onEvent: (ev: FilesystemEvent) => void,
    opts: { recursive?: boolean; onExit?: (err?: OpenSandboxError) => void } = {},
  ): Promise<WatchHandle> {
    const abort = new AbortController();
    const { res, done } = await this.data.send({
      method: "GET",
      path: "/files/watch",
      query: { path, recursive: opts.recursive ? "true" : undefined },
      headers: { Accept: "text/event-stream" },
      timeoutMs: this.data.api.config.requestTimeoutMs,
      signal: abort.signal,
    });
    const events = readEvents(res.body!);
    try {
      // Wait for the watch to be in place.
      for (;;) {
        const { value, done: ended } = await events.next();
        if (ended) throw new OpenSandboxError("watch stream ended before it was ready", { code: "stream_ended" });
        if (value.type === "ready") break;
        if (value.type === "error") throw streamError(value);
      }
    } catch (err) {
      abort.abort();
      throw toSdkError(err);
    } finally {
      done();
    }
    let stopped = false;
    (async () => {
      let failure: OpenSandboxError | undefined;
      try {
        for await (const ev of { [Symbol.asyncIterator]: () => events }) {
          if (ev.type === "error") throw streamError(ev);
          if (ev.type === "ready") continue;
          onEvent({ type: ev.type as FilesystemEvent["type"], path: String(ev.path ?? ""), isDir: ev.isDir === true });
        }
      } catch (err) {
        if (!stopped) failure = toSdkError(err);
      }
      opts.onExit?.(failure);
    })();
    return {
      stop() {
        stopped = true;
        abort.abort();
      },
    };
  }
}
