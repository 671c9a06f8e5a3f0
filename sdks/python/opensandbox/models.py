"""Plain data returned by the SDK (dataclasses, snake_case)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

__all__ = [
    "SandboxInfo",
    "EntryInfo",
    "CommandResult",
    "ProcessInfo",
    "FilesystemEvent",
    "parse_time",
]

_TIME_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")


def parse_time(value: Optional[str]) -> Optional[datetime]:
    """Parses an RFC 3339 time as the server sends it (nanoseconds allowed).

    Returns an aware ``datetime`` (UTC when no offset is given), or ``None``
    for a missing value or Go's zero time.
    """
    if not value:
        return None
    m = _TIME_RE.match(value.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 time: {value!r}")
    base, frac, tz = m.groups()
    text = base + (frac[:7] if frac else "")  # at most microseconds
    if tz and tz != "Z":
        text += tz
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    if dt.year <= 1:
        return None
    return dt


@dataclass
class SandboxInfo:
    """What the API says about one sandbox."""

    sandbox_id: str
    template_id: str
    status: str
    started_at: Optional[datetime] = None
    end_at: Optional[datetime] = None
    metadata: Dict[str, str] = field(default_factory=dict)
    cpu_count: int = 0
    memory_mb: int = 0
    disk_mb: int = 0
    network_enabled: bool = False
    alias: Optional[str] = None
    region: Optional[str] = None
    worker_id: Optional[str] = None
    client_id: Optional[str] = None

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "SandboxInfo":
        return cls(
            sandbox_id=d["sandboxID"],
            template_id=d.get("templateID", ""),
            status=d.get("status", ""),
            started_at=parse_time(d.get("startedAt")),
            end_at=parse_time(d.get("endAt")),
            metadata=dict(d.get("metadata") or {}),
            cpu_count=int(d.get("cpuCount") or 0),
            memory_mb=int(d.get("memoryMB") or 0),
            disk_mb=int(d.get("diskMB") or 0),
            network_enabled=bool(d.get("networkEnabled")),
            alias=d.get("alias") or None,
            region=d.get("region") or None,
            worker_id=d.get("workerID") or None,
            client_id=d.get("clientID") or None,
        )


@dataclass
class EntryInfo:
    """One file system entry in a sandbox."""

    name: str
    path: str
    is_dir: bool
    size: int
    mode: str
    """Octal permission bits, e.g. ``"0644"``."""
    mod_time: Optional[datetime] = None
    symlink_target: Optional[str] = None

    @property
    def type(self) -> str:
        """``"dir"`` or ``"file"``."""
        return "dir" if self.is_dir else "file"

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "EntryInfo":
        return cls(
            name=d.get("name", ""),
            path=d.get("path", ""),
            is_dir=bool(d.get("isDir")),
            size=int(d.get("size") or 0),
            mode=str(d.get("mode") or ""),
            mod_time=parse_time(d.get("modTime")),
            symlink_target=d.get("symlinkTarget") or None,
        )


@dataclass
class CommandResult:
    """The outcome of a finished command."""

    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False
    """The command ran past its ``timeout`` and was killed (exit code 124)."""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration_ms: Optional[int] = None
    pid: Optional[int] = None
    oom_killed: bool = False
    """The sandbox ran out of memory and the kernel killed the command (exit code 137)."""

    @property
    def ok(self) -> bool:
        """True when the command exited with code 0."""
        return self.exit_code == 0

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "CommandResult":
        return cls(
            exit_code=int(d.get("exitCode", -1)),
            stdout=d.get("stdout") or "",
            stderr=d.get("stderr") or "",
            timed_out=bool(d.get("timedOut")),
            stdout_truncated=bool(d.get("stdoutTruncated")),
            stderr_truncated=bool(d.get("stderrTruncated")),
            duration_ms=d.get("durationMs"),
            oom_killed=bool(d.get("oomKilled")),
        )


@dataclass
class ProcessInfo:
    """A process started with ``background=True`` or in streaming mode."""

    pid: int
    cmd: str
    args: List[str] = field(default_factory=list)
    cwd: Optional[str] = None
    tag: Optional[str] = None
    started_at: Optional[datetime] = None
    running: bool = False
    exit_code: Optional[int] = None

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "ProcessInfo":
        return cls(
            pid=int(d["pid"]),
            cmd=d.get("cmd", ""),
            args=list(d.get("args") or []),
            cwd=d.get("cwd") or None,
            tag=d.get("tag") or None,
            started_at=parse_time(d.get("startedAt")),
            running=bool(d.get("running")),
            exit_code=d.get("exitCode"),
        )


@dataclass
class FilesystemEvent:
    """A change seen by ``files.watch``: ``type`` is one of ``create``,
    ``write``, ``remove``, ``rename`` or ``chmod``; ``overflow`` (with an
    empty path) says the kernel dropped events, so rescan if that matters."""

    type: str
    path: str
    is_dir: bool = False

    @property
    def name(self) -> str:
        """The last element of ``path``."""
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "FilesystemEvent":
        return cls(type=d.get("type", ""), path=d.get("path", ""), is_dir=bool(d.get("isDir")))
