/**
 * Every failure the SDK reports is an OpenSandboxError (or a subclass), carrying
 * the HTTP status (0 when no answer arrived) and the server's machine code.
 */
export class OpenSandboxError extends Error {
  /** HTTP status of the answer; 0 when the request never got one. */
  readonly status: number;
  /** Machine-readable code, e.g. `sandbox_not_found`, `invalid_argument`. */
  readonly code: string;
  /** Server request id (`X-Request-Id`), when the server answered. */
  readonly requestId?: string;

  constructor(message: string, opts: { status?: number; code?: string; requestId?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.status = opts.status ?? 0;
    this.code = opts.code ?? "unknown";
    this.requestId = opts.requestId;
  }
}

/** 401/403: missing, wrong or expired credentials. */
export class AuthenticationError extends OpenSandboxError {}

/** 404: an unknown sandbox, file, process or PTY session. */
export class NotFoundError extends OpenSandboxError {}

/**
 * The sandbox this object stands for no longer exists: it was killed or its
 * timeout passed. A NotFoundError, so `instanceof NotFoundError` catches it too.
 */
export class SandboxGoneError extends NotFoundError {}

/** 429: a rate limit or quota was hit. */
export class RateLimitError extends OpenSandboxError {}

/** 400/409/413/422: the request was refused as malformed or invalid. */
export class InvalidArgumentError extends OpenSandboxError {}

/**
 * A deadline passed: the request's own (`requestTimeoutMs`), a gateway's (504),
 * or a command's `timeout` (then `result` holds what it printed before).
 */
export class TimeoutError extends OpenSandboxError {
  /** For a command that ran out of time: its exit code (124) and output so far. */
  result?: { exitCode: number; stdout: string; stderr: string };
}

/** The server could not be reached (connection refused, reset, DNS). */
export class ConnectionError extends OpenSandboxError {}

/** Maps an HTTP error answer to the matching error class. */
export function errorFromResponse(
  status: number,
  body: { error?: string; code?: string } | undefined,
  opts: { requestId?: string; sandboxKnown?: boolean } = {},
): OpenSandboxError {
  const code = body?.code || statusCode(status);
  const message = body?.error || `HTTP ${status}`;
  const init = { status, code, requestId: opts.requestId };
  if (status === 401 || status === 403) return new AuthenticationError(message, init);
  if (status === 410 || (status === 404 && code === "sandbox_not_found" && opts.sandboxKnown)) {
    return new SandboxGoneError(message, init);
  }
  if (status === 404) return new NotFoundError(message, init);
  if (status === 429) return new RateLimitError(message, init);
  if (status === 400 || status === 409 || status === 413 || status === 422) return new InvalidArgumentError(message, init);
  if (status === 408 || status === 504) return new TimeoutError(message, init);
  return new OpenSandboxError(message, init);
}

function statusCode(status: number): string {
  switch (status) {
    case 400:
      return "invalid_argument";
    case 401:
      return "unauthenticated";
    case 403:
      return "forbidden";
    case 404:
      return "not_found";
    case 429:
      return "quota_exceeded";
    case 503:
      return "unavailable";
    default:
      return status >= 500 ? "internal" : "http_" + status;
  }
}

/** Runs a delete-like call: true when it succeeded, false when `absent(err)` says the thing was not there. */
async function trueUnless(call: Promise<unknown>, absent: (err: unknown) => boolean): Promise<boolean> {
  try {
    await call;
    return true;
  } catch (err) {
    if (absent(err)) return false;
    throw err;
  }
}

/** Runs a delete-like call: true when it succeeded, false for a NotFoundError (with `code`, if given). */
export function trueUnlessNotFound(call: Promise<unknown>, code?: string): Promise<boolean> {
  return trueUnless(call, (err) => err instanceof NotFoundError && (code === undefined || err.code === code));
}

/**
 * Runs a kill: true when it succeeded, false when the server says the sandbox
 * does not exist (404 `sandbox_not_found`, or 410); other failures throw.
 */
export function trueUnlessGone(call: Promise<unknown>): Promise<boolean> {
  return trueUnless(
    call,
    (err) => err instanceof SandboxGoneError || (err instanceof NotFoundError && err.code === "sandbox_not_found"),
  );
}
