import { ConnectionConfig } from "./config.js";
import { OpenSandboxError } from "./errors.js";
import { Endpoint, RequestSpec, isTokenExpired, send, sendJSON } from "./transport.js";

/** What the control plane answers to `POST /sandboxes/:id/token`. */
export interface TokenGrant {
  token: string;
  tokenExpiresAt?: string;
  connectURL?: string;
}

/** Lifecycle calls: the API URL with the API key. */
export class ApiClient {
  constructor(readonly config: ConnectionConfig) {}

  endpoint(): Endpoint {
    const headers: Record<string, string> = {};
    if (this.config.apiKey) headers["X-API-Key"] = this.config.apiKey;
    return { baseUrl: this.config.apiUrl, headers, token: this.config.apiKey };
  }

  json<T>(spec: RequestSpec): Promise<T> {
    return sendJSON<T>(this.endpoint(), { timeoutMs: this.config.requestTimeoutMs, ...spec });
  }
}

/**
 * The data path of one sandbox. With a `connectURL` and `token` from the create
 * answer, calls go there with `Authorization: Bearer <token>`, and the token is
 * renewed through the control plane shortly before `tokenExpiresAt` (or once
 * after a `token_expired` answer); without them, calls go to the API URL with
 * the API key.
 */
export class DataClient {
  private connectURL?: string;
  private token?: string;
  private expiresAt?: number; // ms since epoch
  private margin = 0; // refresh this long before expiresAt
  private refreshing?: Promise<void>;

  constructor(
    readonly api: ApiClient,
    readonly sandboxId: string,
    grant?: { connectURL?: string; token?: string; tokenExpiresAt?: string },
  ) {
    if (grant?.connectURL && grant.token) this.accept(grant as TokenGrant);
  }

  /** True when data-path calls go to a worker's connectURL with a sandbox token. */
  get direct(): boolean {
    return this.token !== undefined;
  }

  private accept(g: TokenGrant): void {
    if (!g.token) throw new OpenSandboxError("token answer without a token", { code: "bad_response" });
    this.token = g.token;
    if (g.connectURL) this.connectURL = g.connectURL;
    const exp = g.tokenExpiresAt ? Date.parse(g.tokenExpiresAt) : NaN;
    this.expiresAt = Number.isFinite(exp) ? exp : undefined;
    // Renew a minute early, or a quarter of the lifetime for short-lived tokens.
    const life = this.expiresAt !== undefined ? this.expiresAt - Date.now() : 0;
    this.margin = Math.min(60_000, Math.max(0, life) / 4);
  }

  /** Fetches a fresh token from the control plane (one request at a time). */
  refreshToken(): Promise<void> {
    this.refreshing ??= this.api
      .json<TokenGrant>({ method: "POST", path: `/sandboxes/${this.sandboxId}/token`, json: {}, sandboxKnown: true })
      .then((g) => this.accept(g))
      .finally(() => {
        this.refreshing = undefined;
      });
    return this.refreshing;
  }

  /** Base URL, headers and WebSocket token for the next data-path call. */
  async endpoint(): Promise<Endpoint> {
    if (this.token === undefined) return this.api.endpoint();
    if (this.expiresAt !== undefined && Date.now() >= this.expiresAt - this.margin) await this.refreshToken();
    return {
      baseUrl: this.connectURL!,
      headers: { Authorization: `Bearer ${this.token}` },
      token: this.token,
    };
  }

  private prefix(path: string): string {
    return `/sandboxes/${this.sandboxId}${path}`;
  }

  /** A data-path request whose answer the caller reads; retried once on token_expired when replayable. */
  async send(spec: RequestSpec): Promise<{ res: Response; done: () => void }> {
    const full = { sandboxKnown: true, ...spec, path: this.prefix(spec.path) };
    try {
      return await send(await this.endpoint(), full);
    } catch (err) {
      if (!isTokenExpired(err) || !this.direct || spec.body instanceof ReadableStream) throw err;
      await this.refreshToken();
      return send(await this.endpoint(), full);
    }
  }

  /** A data-path request with a JSON answer, with the API's request deadline. */
  async json<T>(spec: RequestSpec): Promise<T> {
    const full = { sandboxKnown: true, timeoutMs: this.api.config.requestTimeoutMs, ...spec, path: this.prefix(spec.path) };
    try {
      return await sendJSON<T>(await this.endpoint(), full);
    } catch (err) {
      if (!isTokenExpired(err) || !this.direct || spec.body instanceof ReadableStream) throw err;
      await this.refreshToken();
      return sendJSON<T>(await this.endpoint(), full);
    }
  }

  /** The ws:// URL of a data-path WebSocket route, with its credential. */
  async wsUrl(path: string): Promise<string> {
    const ep = await this.endpoint();
    const url = new URL(ep.baseUrl.replace(/\/+$/, "") + this.prefix(path));
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    if (ep.token) url.searchParams.set("token", ep.token);
    return url.toString();
  }
}
