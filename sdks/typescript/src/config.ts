/** Where and how to reach the OpenSandbox API. */
export interface ConnectionOptions {
  /** API URL; default `OPENSANDBOX_API_URL`, else `http://localhost:8080`. */
  apiUrl?: string;
  /** API key sent as `X-API-Key`; default `OPENSANDBOX_API_KEY`. */
  apiKey?: string;
  /**
   * Deadline in milliseconds for one ordinary request (lifecycle calls, small
   * file operations); default 60 000. Commands get their own `timeout` on top;
   * streamed transfers and event streams have none.
   */
  requestTimeoutMs?: number;
}

export const DEFAULT_API_URL = "http://localhost:8080";
export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;

/** Resolved connection settings: options first, then the environment, then defaults. */
export class ConnectionConfig {
  readonly apiUrl: string;
  readonly apiKey?: string;
  readonly requestTimeoutMs: number;

  constructor(opts: ConnectionOptions = {}) {
    const url = opts.apiUrl || process.env.OPENSANDBOX_API_URL || DEFAULT_API_URL;
    this.apiUrl = url.replace(/\/+$/, "");
    this.apiKey = opts.apiKey ?? (process.env.OPENSANDBOX_API_KEY || undefined);
    this.requestTimeoutMs = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  }
}

/**
 * The server counts timeouts in whole seconds: a positive timeout is rounded
 * up (0.4 → 1, 1.5 → 2); undefined, 0 and negative values go as they are.
 */
export function wholeSeconds(seconds: number | undefined): number | undefined {
  return seconds !== undefined && seconds > 0 ? Math.ceil(seconds) : seconds;
}
