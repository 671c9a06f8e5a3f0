import { ConnectionConfig } from "./config.js";
import {
  AuthenticationError,
  ConnectionError,
  OpenSandboxError,
  TimeoutError,
  errorFromResponse,
} from "./errors.js";

export type Query = Record<string, string | number | boolean | undefined>;

/** A body fetch can send; `replayable` is false for streams (no retry). */
export type Body = string | Uint8Array | ReadableStream<Uint8Array> | undefined;

export interface RequestSpec {
  method: string;
  path: string;
  query?: Query;
  json?: unknown;
  body?: Body;
  headers?: Record<string, string>;
  /** Deadline for the answer's headers (and, for JSON answers, its body); 0 = none. */
  timeoutMs?: number;
  /** A caller's signal; aborting it ends the request. */
  signal?: AbortSignal;
  /** The caller stands for this sandbox: a 404 sandbox_not_found means it is gone. */
  sandboxKnown?: boolean;
}

/** Base URL and headers for one request. */
export interface Endpoint {
  baseUrl: string;
  headers: Record<string, string>;
  /** Credential a WebSocket carries as `?token=`. */
  token?: string;
}

export function buildUrl(base: string, path: string, query?: Query): string {
  const url = new URL(base.replace(/\/+$/, "") + path);
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v !== undefined) url.searchParams.set(k, String(v));
  }
  return url.toString();
}

/**
 * Sends one request and answers the Response once its headers arrived, or
 * throws the typed error for a non-2xx answer, a deadline or a network fault.
 * The caller reads the body; `done()` clears the deadline.
 */
export async function send(ep: Endpoint, spec: RequestSpec): Promise<{ res: Response; done: () => void }> {
  const ctl = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timeoutMs = spec.timeoutMs ?? 0;
  if (timeoutMs > 0) {
    timer = setTimeout(
      () => ctl.abort(new TimeoutError(`${spec.method} ${spec.path}: no answer within ${timeoutMs} ms`, { code: "request_timeout" })),
      timeoutMs,
    );
  }
  const signal = spec.signal ? AbortSignal.any([ctl.signal, spec.signal]) : ctl.signal;
  const done = () => {
    if (timer) clearTimeout(timer);
  };

  const headers: Record<string, string> = { ...ep.headers, ...spec.headers };
  let body: RequestInit["body"] | undefined;
  if (spec.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(spec.json);
  } else if (spec.body !== undefined) {
    body = spec.body as RequestInit["body"];
    headers["Content-Type"] ??= "application/octet-stream";
  }
  const init: RequestInit & { duplex?: "half" } = { method: spec.method, headers, body, signal };
  if (body instanceof ReadableStream) init.duplex = "half";

  let res: Response;
  try {
    res = await fetch(buildUrl(ep.baseUrl, spec.path, spec.query), init);
  } catch (err) {
    done();
    throw toSdkError(err, spec);
  }
  if (!res.ok) {
    let parsed: { error?: string; code?: string } | undefined;
    try {
      const text = await res.text();
      parsed = text ? (JSON.parse(text) as { error?: string; code?: string }) : undefined;
    } catch {
      parsed = undefined;
    }
    done();
    throw errorFromResponse(res.status, parsed, {
      requestId: res.headers.get("x-request-id") ?? undefined,
      sandboxKnown: spec.sandboxKnown,
    });
  }
  return { res, done };
}

/** Sends a request and parses its JSON answer (undefined for 204). */
export async function sendJSON<T>(ep: Endpoint, spec: RequestSpec): Promise<T> {
  const { res, done } = await send(ep, spec);
  try {
    if (res.status === 204) return undefined as T;
    const text = await res.text();
    return (text ? JSON.parse(text) : undefined) as T;
  } catch (err) {
    throw toSdkError(err, spec);
  } finally {
    done();
  }
}

/** Turns whatever fetch or a body read threw into an OpenSandboxError. */
export function toSdkError(err: unknown, spec?: { method: string; path: string }): OpenSandboxError {
  if (err instanceof OpenSandboxError) return err;
  const what = spec ? `${spec.method} ${spec.path}: ` : "";
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === "TimeoutError" || e?.cause?.code === "UND_ERR_HEADERS_TIMEOUT" || e?.cause?.code === "UND_ERR_BODY_TIMEOUT") {
    return new TimeoutError(what + (e.cause?.message ?? e.message ?? "timed out"), { code: "request_timeout", cause: err });
  }
  if (e?.name === "AbortError") {
    return new OpenSandboxError(what + "aborted", { code: "aborted", cause: err });
  }
  if (e?.name === "SyntaxError") {
    return new OpenSandboxError(what + "malformed answer: " + e.message, { code: "bad_response", cause: err });
  }
  const detail = e?.cause?.message || e?.cause?.code || e?.message || String(err);
  return new ConnectionError(what + detail, { code: "connection_error", cause: err });
}

export function isTokenExpired(err: unknown): boolean {
  return err instanceof AuthenticationError && err.code === "token_expired";
}
