export { Sandbox } from "./sandbox.js";
export type { SandboxInfo, SandboxOptions } from "./sandbox.js";
export { CommandHandle, Commands } from "./commands.js";
export type { CommandOptions, CommandResult, ProcessInfo } from "./commands.js";
export { Files } from "./files.js";
export type { EntryInfo, FilesystemEvent, ProgressCallback, ReadOptions, WatchHandle, WriteData, WriteOptions } from "./files.js";
export { Pty, PtyHandle } from "./pty.js";
export type { PtyOptions } from "./pty.js";
export { ConnectionConfig, DEFAULT_API_URL } from "./config.js";
export type { ConnectionOptions } from "./config.js";
export {
  AuthenticationError,
  ConnectionError,
  InvalidArgumentError,
  NotFoundError,
  OpenSandboxError,
  RateLimitError,
  SandboxGoneError,
  TimeoutError,
} from "./errors.js";
