"""OpenSandbox Python SDK: isolated Linux sandboxes for AI agents and code.

    from opensandbox import Sandbox

    with Sandbox.create(template="base") as sbx:
        print(sbx.commands.run("python3 -c 'print(1+1)'").stdout)

``Sandbox`` is blocking; ``AsyncSandbox`` has the same surface for asyncio.
"""

from ._async.commands import AsyncCommandHandle, AsyncCommands
from ._async.filesystem import AsyncFilesystem, AsyncWatchHandle
from ._async.pty import AsyncPty, AsyncPtyHandle
from ._async.sandbox import AsyncSandbox
from ._sync.commands import CommandHandle, Commands
from ._sync.filesystem import Filesystem, WatchHandle
from ._sync.pty import Pty, PtyHandle
from ._sync.sandbox import Sandbox
from ._wire import ConnectionConfig
from .exceptions import (
    AuthenticationError,
    ConflictError,
    InvalidArgumentError,
    NetworkError,
    NotFoundError,
    OpenSandboxError,
    OpenSandboxTimeoutError,
    PermissionDeniedError,
    RateLimitError,
    SandboxGoneError,
    UnavailableError,
)
from .models import CommandResult, EntryInfo, FilesystemEvent, ProcessInfo, SandboxInfo

__version__ = "0.1.0"

__all__ = [
    "Sandbox",
    "AsyncSandbox",
    "Commands",
    "AsyncCommands",
    "CommandHandle",
    "AsyncCommandHandle",
    "Filesystem",
    "AsyncFilesystem",
    "WatchHandle",
    "AsyncWatchHandle",
    "Pty",
    "AsyncPty",
    "PtyHandle",
    "AsyncPtyHandle",
    "ConnectionConfig",
    "CommandResult",
    "EntryInfo",
    "FilesystemEvent",
    "ProcessInfo",
    "SandboxInfo",
    "OpenSandboxError",
    "NotFoundError",
    "SandboxGoneError",
    "AuthenticationError",
    "RateLimitError",
    "InvalidArgumentError",
    "ConflictError",
    "PermissionDeniedError",
    "UnavailableError",
    "NetworkError",
    "OpenSandboxTimeoutError",
]
