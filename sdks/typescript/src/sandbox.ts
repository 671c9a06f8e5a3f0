import { ApiClient, DataClient } from "./client.js";
import { Commands } from "./commands.js";
import { ConnectionConfig, ConnectionOptions, wholeSeconds } from "./config.js";
import { SandboxGoneError, trueUnlessGone } from "./errors.js";
import { Files } from "./files.js";
import { Pty } from "./pty.js";

/** What the API tells about one sandbox. */
export interface SandboxInfo {
  sandboxId: string;
  templateId: string;
  alias?: string;
  status: "running" | "stopped" | "error" | string;
  startedAt: Date;
  /** When the sandbox's timeout ends it. */
  endAt: Date;
  metadata: Record<string, string>;
  cpuCount: number;
  memoryMB: number;
  /** Limit of the root file system in MiB. */
  diskMB: number;
  networkEnabled: boolean;
  workerId?: string;
  region?: string;
  /** The worker's URL for data-path calls, in server mode. */
  connectURL?: string;
}

export interface SandboxOptions extends ConnectionOptions {
  /** Template name (`base`, `busybox`) or an image reference; default `base`. */
  template?: string;
  /** Seconds until the sandbox is killed, rounded up to whole seconds; default the server's (300). */
  timeout?: number;
  /** Environment variables for everything that runs in the sandbox. */
  envs?: Record<string, string>;
  /** Your own labels, returned by `getInfo()` and `list()`. */
  metadata?: Record<string, string>;
  alias?: string;
  cpuCount?: number;
  memoryMB?: number;
  /** Limit of the root file system in MiB, default the server's (10240); writes past it fail with ENOSPC inside. */
  diskMB?: number;
  /** Outbound network access; default off. */
  networkEnabled?: boolean;
  /** Where to place it; without capacity there the control plane falls back to the next region (`region` on the sandbox says which). */
  region?: string;
  /** Stay in `region`: without capacity there, fail with `no_capacity` instead of falling back. */
  strictRegion?: boolean;
}

interface ServerSandbox {
  sandboxID: string;
  templateID: string;
  alias?: string;
  status: string;
  startedAt: string;
  endAt: string;
  metadata?: Record<string, string>;
  cpuCount: number;
  memoryMB: number;
  diskMB?: number;
  networkEnabled: boolean;
  workerID?: string;
  region?: string;
  connectURL?: string;
  token?: string;
  tokenExpiresAt?: string;
}

function info(s: ServerSandbox): SandboxInfo {
  return {
    sandboxId: s.sandboxID,
    templateId: s.templateID,
    alias: s.alias,
    status: s.status,
    startedAt: new Date(s.startedAt),
    endAt: new Date(s.endAt),
    metadata: s.metadata ?? {},
    cpuCount: s.cpuCount,
    memoryMB: s.memoryMB,
    diskMB: s.diskMB ?? 0,
    networkEnabled: s.networkEnabled,
    workerId: s.workerID,
    region: s.region,
    connectURL: s.connectURL,
  };
}

/**
 * An isolated Linux sandbox. Create one with `Sandbox.create()`; end it with
 * `kill()`, or let `await using` do that:
 *
 * ```ts
 * await using sbx = await Sandbox.create({ template: "base" });
 * const r = await sbx.commands.run("echo hi");
 * ```
 */
export class Sandbox {
  /** The sandbox's id. */
  readonly sandboxId: string;
  /** Run commands and manage processes. */
  readonly commands: Commands;
  /** Read, write, list and watch files. */
  readonly files: Files;
  /** Interactive terminals. */
  readonly pty: Pty;
  /** The settings this sandbox's calls use. */
  readonly connectionConfig: ConnectionConfig;

  private readonly api: ApiClient;
  private readonly data: DataClient;

  private constructor(api: ApiClient, s: ServerSandbox) {
    this.api = api;
    this.connectionConfig = api.config;
    this.sandboxId = s.sandboxID;
    this.data = new DataClient(api, s.sandboxID, s);
    this.commands = new Commands(this.data);
    this.files = new Files(this.data);
    this.pty = new Pty(this.data);
  }

  /** Creates a sandbox and answers once it runs. */
  static async create(opts: SandboxOptions = {}): Promise<Sandbox> {
    const api = new ApiClient(new ConnectionConfig(opts));
    const s = await api.json<ServerSandbox>({
      method: "POST",
      path: "/sandboxes",
      json: {
        templateID: opts.template ?? "base",
        timeout: wholeSeconds(opts.timeout),
        envs: opts.envs,
        metadata: opts.metadata,
        alias: opts.alias,
        cpuCount: opts.cpuCount,
        memoryMB: opts.memoryMB,
        diskMB: opts.diskMB,
        networkEnabled: opts.networkEnabled,
        region: opts.region,
        strictRegion: opts.strictRegion || undefined,
      },
    });
    return new Sandbox(api, s);
  }

  /** Attaches to a running sandbox by id; NotFoundError if there is none. */
  static async connect(sandboxId: string, opts: ConnectionOptions = {}): Promise<Sandbox> {
    const api = new ApiClient(new ConnectionConfig(opts));
    const s = await api.json<ServerSandbox>({ method: "GET", path: `/sandboxes/${encodeURIComponent(sandboxId)}` });
    const sbx = new Sandbox(api, s);
    // A control plane that names the worker but gives no token here hands one out on request.
    if (s.connectURL && !s.token) await sbx.data.refreshToken();
    return sbx;
  }

  /** The sandboxes the API key can see. */
  static async list(opts: ConnectionOptions = {}): Promise<SandboxInfo[]> {
    const api = new ApiClient(new ConnectionConfig(opts));
    const all = await api.json<ServerSandbox[]>({ method: "GET", path: "/sandboxes" });
    return (all ?? []).map(info);
  }

  /**
   * Kills a sandbox by id: true when it did, false when there was none (the
   * server answered `sandbox_not_found`); other failures throw.
   */
  static kill(sandboxId: string, opts: ConnectionOptions = {}): Promise<boolean> {
    const api = new ApiClient(new ConnectionConfig(opts));
    return trueUnlessGone(api.json({ method: "DELETE", path: `/sandboxes/${encodeURIComponent(sandboxId)}` }));
  }

  /** Kills this sandbox: true when it did, false when it was already gone; other failures throw. */
  kill(): Promise<boolean> {
    return trueUnlessGone(this.api.json({ method: "DELETE", path: `/sandboxes/${this.sandboxId}`, sandboxKnown: true }));
  }

  /** Ends the sandbox `seconds` from now (longer or shorter than before), rounded up to whole seconds. */
  async setTimeout(seconds: number): Promise<void> {
    await this.api.json({
      method: "POST",
      path: `/sandboxes/${this.sandboxId}/timeout`,
      json: { timeout: wholeSeconds(seconds) },
      sandboxKnown: true,
    });
  }

  /** What the API tells about this sandbox now; SandboxGoneError once it ended. */
  async getInfo(): Promise<SandboxInfo> {
    return info(await this.api.json<ServerSandbox>({ method: "GET", path: `/sandboxes/${this.sandboxId}`, sandboxKnown: true }));
  }

  /** True while the sandbox exists and runs. */
  async isRunning(): Promise<boolean> {
    try {
      return (await this.getInfo()).status === "running";
    } catch (err) {
      if (err instanceof SandboxGoneError) return false;
      throw err;
    }
  }

  /** `await using sbx = await Sandbox.create()` kills the sandbox at the end of the block. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill();
  }
}
