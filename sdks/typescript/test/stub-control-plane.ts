/**
 * STUB control plane and worker, for unit tests of what the combined server
 * cannot show: sandbox tokens (connectURL + token, POST /sandboxes/:id/token,
 * token_expired), 429 answers and answers that never come. It is not a server
 * implementation; everything else is tested against the real server.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { WebSocketServer } from "ws";

export interface StubRequest {
  method: string;
  path: string;
  apiKey?: string;
  bearer?: string;
  query: URLSearchParams;
  /** The JSON body, if there was one. */
  body?: Record<string, unknown>;
}

export class StubControlPlane {
  readonly apiKey = "stub-api-key";
  /** Every request, in order. */
  readonly requests: StubRequest[] = [];
  /** Lifetime of tokens handed out, in ms. */
  tokenLifeMs = 600_000;
  /** Whether POST /sandboxes hands out a token (else only GET /sandboxes/:id with connectURL). */
  tokenOnCreate = true;
  /** Tokens the worker accepts; others answer 401 token_expired. */
  readonly valid = new Set<string>();
  /** Answer this for POST /sandboxes instead of a sandbox. */
  createAnswer?: { status: number; body: unknown };
  /** Answer this for DELETE /sandboxes/:id instead of 204. */
  deleteAnswer?: { status: number; body: unknown };
  /** Paths that never get an answer. */
  readonly hang = new Set<string>();

  private server: Server;
  private wss = new WebSocketServer({ noServer: true });
  private issued = 0;
  url = "";

  constructor() {
    this.server = createServer((req, res) => this.handle(req, res));
    this.server.on("upgrade", (req, socket, head) => {
      const r = this.record(req);
      const m = /^\/worker\/sandboxes\/([^/]+)\/pty\/([^/]+)$/.exec(r.path);
      const token = r.query.get("token") ?? "";
      if (!m || !this.valid.has(token)) {
        socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{"error":"bad token","code":"token_expired"}');
        return;
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        ws.send(Buffer.from("stub terminal\r\n"), { binary: true });
        ws.on("message", (data, isBinary) => {
          if (isBinary && String(data) === "exit\n") {
            ws.send(JSON.stringify({ type: "exit", exitCode: 9 }));
            ws.close(1000);
          }
        });
      });
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    for (const ws of this.wss.clients) ws.terminate();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Requests whose path matches. */
  seen(pattern: RegExp): StubRequest[] {
    return this.requests.filter((r) => pattern.test(`${r.method} ${r.path}`));
  }

  /** Forgets requests and tokens, and goes back to the default answers. */
  reset(): void {
    this.requests.length = 0;
    this.valid.clear();
    this.issued = 0;
    this.tokenLifeMs = 600_000;
    this.tokenOnCreate = true;
    this.createAnswer = undefined;
    this.deleteAnswer = undefined;
    this.hang.clear();
  }

  /** Marks every token handed out so far as expired. */
  expireAll(): void {
    this.valid.clear();
  }

  private grant() {
    const token = `tok-${++this.issued}`;
    this.valid.add(token);
    return { token, tokenExpiresAt: new Date(Date.now() + this.tokenLifeMs).toISOString(), connectURL: `${this.url}/worker` };
  }

  private sandbox(id: string) {
    const now = new Date();
    return {
      sandboxID: id,
      templateID: "busybox",
      status: "running",
      startedAt: now.toISOString(),
      endAt: new Date(now.getTime() + 300_000).toISOString(),
      cpuCount: 1,
      memoryMB: 512,
      networkEnabled: false,
      connectURL: `${this.url}/worker`,
    };
  }

  private record(req: IncomingMessage): StubRequest {
    const u = new URL(req.url ?? "/", "http://stub");
    const auth = req.headers.authorization ?? "";
    const r: StubRequest = {
      method: req.method ?? "GET",
      path: u.pathname,
      query: u.searchParams,
      apiKey: req.headers["x-api-key"] as string | undefined,
      bearer: auth.startsWith("Bearer ") ? auth.slice(7) : undefined,
    };
    this.requests.push(r);
    return r;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const r = this.record(req);
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      try {
        r.body = JSON.parse(Buffer.concat(chunks).toString());
      } catch {
        // not JSON
      }
      if (this.hang.has(r.path)) return;
      const send = (status: number, body?: unknown) => {
        res.writeHead(status, body === undefined ? {} : { "Content-Type": "application/json" });
        res.end(body === undefined ? undefined : JSON.stringify(body));
      };
      const worker = r.path.startsWith("/worker/");
      if (worker) {
        if (!r.bearer) return send(401, { error: "missing credentials", code: "unauthenticated" });
        if (!this.valid.has(r.bearer)) return send(401, { error: "token expired", code: "token_expired" });
        const path = r.path.slice("/worker".length);
        if (/^\/sandboxes\/[^/]+\/commands$/.test(path)) {
          if (r.body?.background) return send(200, { pid: 7 });
          return send(200, { exitCode: 0, stdout: `token ${r.bearer}\n`, stderr: "", durationMs: 1 });
        }
        if (/^\/sandboxes\/[^/]+\/pty$/.test(path)) return send(201, { sessionID: "pty1", sandboxID: "sbx1" });
        return send(404, { error: "no such route", code: "not_found" });
      }
      if (r.apiKey !== this.apiKey) return send(403, { error: "invalid credentials", code: "forbidden" });
      if (r.method === "POST" && r.path === "/sandboxes") {
        if (this.createAnswer) return send(this.createAnswer.status, this.createAnswer.body);
        return send(201, { ...this.sandbox("sbx1"), ...(this.tokenOnCreate ? this.grant() : {}) });
      }
      const m = /^\/sandboxes\/([^/]+)(\/token)?$/.exec(r.path);
      if (m && r.method === "POST" && m[2]) return send(200, this.grant());
      if (m && r.method === "GET" && !m[2]) return send(200, this.sandbox(m[1]!));
      if (m && r.method === "DELETE" && !m[2]) return this.deleteAnswer ? send(this.deleteAnswer.status, this.deleteAnswer.body) : send(204);
      if (r.method === "GET" && r.path === "/sandboxes") return send(200, []);
      if (r.method === "POST" && /^\/sandboxes\/[^/]+\/timeout$/.test(r.path)) return send(204);
      return send(404, { error: "no such route", code: "not_found" });
    });
  }
}
