"""Wire-level pieces shared by the sync and async clients: configuration,
credentials and routing, request bodies, the SSE decoder and the collector
that turns command stream events into a result. Nothing here does I/O."""

from __future__ import annotations

import base64
import codecs
import json
import math
import os
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from .exceptions import OpenSandboxError, error_from_event
from .models import CommandResult, FilesystemEvent, parse_time

DEFAULT_API_URL = "http://localhost:8080"
DEFAULT_REQUEST_TIMEOUT = 60.0
CONNECT_TIMEOUT = 10.0
CHUNK_SIZE = 1 << 20
# The server sends a keepalive comment every 15 s on idle streams.
STREAM_READ_TIMEOUT = 60.0
# Refresh a sandbox token once less than this share of its lifetime is left
# (and at most REFRESH_MARGIN_MAX seconds before it expires).
REFRESH_SHARE = 0.2
REFRESH_MARGIN_MAX = 60.0

OutputCallback = Callable[[str], Any]
ProgressCallback = Callable[[int, Optional[int]], Any]

# Wall clock used for token expiry; tests replace it.
clock: Callable[[], float] = time.time

_ssl_context: Optional[ssl.SSLContext] = None
_ssl_lock = threading.Lock()


def ssl_context() -> ssl.SSLContext:
    """One TLS context (system trust store) for every client: building one
    per client costs tens of milliseconds."""
    global _ssl_context
    with _ssl_lock:
        if _ssl_context is None:
            _ssl_context = ssl.create_default_context()
        return _ssl_context


@dataclass(frozen=True)
class ConnectionConfig:
    """Where the API is and how to authenticate.

    ``api_url`` and ``api_key`` default to ``OPENSANDBOX_API_URL`` (else
    ``http://localhost:8080``) and ``OPENSANDBOX_API_KEY``.
    ``request_timeout`` (seconds) bounds ordinary requests.
    """

    api_url: str = DEFAULT_API_URL
    api_key: Optional[str] = None
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT

    @classmethod
    def resolve(
        cls,
        api_url: Optional[str] = None,
        api_key: Optional[str] = None,
        request_timeout: Optional[float] = None,
    ) -> "ConnectionConfig":
        url = api_url or os.environ.get("OPENSANDBOX_API_URL") or DEFAULT_API_URL
        key = api_key if api_key is not None else os.environ.get("OPENSANDBOX_API_KEY") or None
        return cls(
            api_url=url.rstrip("/"),
            api_key=key,
            request_timeout=DEFAULT_REQUEST_TIMEOUT if request_timeout is None else float(request_timeout),
        )

    def api_headers(self) -> Dict[str, str]:
        return {"X-API-Key": self.api_key} if self.api_key else {}


class DataRoute:
    """Where a sandbox's data-path calls go and with which credential.

    Without a ``connect_url`` (combined mode) they go to the API URL with the
    API key. With one, they go there with ``Authorization: Bearer <token>``,
    and the token is refreshed before ``expires_at``.
    """

    def __init__(self, connect_url: Optional[str] = None, token: Optional[str] = None,
                 expires_at: Optional[datetime] = None) -> None:
        self.connect_url: Optional[str] = None
        self.token: Optional[str] = None
        self.expires_at: Optional[float] = None
        self.received_at: float = 0.0
        self.update(connect_url, token, expires_at)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "DataRoute":
        return cls(d.get("connectURL") or None, d.get("token") or None, parse_time(d.get("tokenExpiresAt")))

    def update(self, connect_url: Optional[str], token: Optional[str], expires_at: Optional[datetime]) -> None:
        if connect_url:
            self.connect_url = connect_url.rstrip("/")
        self.token = token
        self.expires_at = expires_at.timestamp() if expires_at else None
        self.received_at = clock()

    def update_from_json(self, d: Dict[str, Any]) -> None:
        self.update(d.get("connectURL") or None, d.get("token") or None, parse_time(d.get("tokenExpiresAt")))

    @property
    def direct(self) -> bool:
        """True when data-path calls go to a connect URL rather than the API."""
        return self.connect_url is not None

    def needs_token(self) -> bool:
        """True when a (new) token must be fetched before the next call."""
        if not self.direct:
            return False
        if not self.token:
            return True
        if self.expires_at is None:
            return False
        lifetime = max(self.expires_at - self.received_at, 0.0)
        margin = min(REFRESH_MARGIN_MAX, lifetime * REFRESH_SHARE)
        return clock() >= self.expires_at - margin

    def base_url(self, config: ConnectionConfig) -> str:
        return self.connect_url or config.api_url

    def headers(self, config: ConnectionConfig) -> Dict[str, str]:
        if self.direct:
            return {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return config.api_headers()


def ws_url(http_url: str) -> str:
    """Turns an http(s) URL into the matching ws(s) URL."""
    if http_url.startswith("https://"):
        return "wss://" + http_url[len("https://"):]
    if http_url.startswith("http://"):
        return "ws://" + http_url[len("http://"):]
    return http_url


def whole_seconds(seconds: Optional[float]) -> Optional[int]:
    """The server counts timeouts in whole seconds: a positive timeout is
    rounded up (0.4 -> 1, 1.5 -> 2); 0 and negative values go as they are."""
    if seconds is None:
        return None
    return math.ceil(seconds) if seconds > 0 else int(seconds)


def compact(d: Dict[str, Any]) -> Dict[str, Any]:
    """Drops the keys whose value is None."""
    return {k: v for k, v in d.items() if v is not None}


def sandbox_body(
    template: Optional[str],
    timeout: Optional[float],
    envs: Optional[Dict[str, str]],
    metadata: Optional[Dict[str, str]],
    cpu_count: Optional[int],
    memory_mb: Optional[int],
    network_enabled: bool,
    region: Optional[str],
    alias: Optional[str],
    disk_mb: Optional[int] = None,
    strict_region: bool = False,
) -> Dict[str, Any]:
    """The JSON body of ``POST /sandboxes``."""
    return compact({
        "templateID": template,
        "timeout": whole_seconds(timeout),
        "envs": envs or None,
        "metadata": metadata or None,
        "cpuCount": cpu_count,
        "memoryMB": memory_mb,
        "diskMB": disk_mb,
        "networkEnabled": True if network_enabled else None,
        "region": region,
        "strictRegion": True if strict_region else None,
        "alias": alias,
    })


def process_body(
    cmd: str,
    args: Optional[Sequence[str]],
    envs: Optional[Dict[str, str]],
    cwd: Optional[str],
    timeout: Optional[float],
    stdin: Optional[str],
    *,
    background: bool = False,
    stream: bool = False,
    tag: Optional[str] = None,
) -> Dict[str, Any]:
    """The JSON body of ``POST /sandboxes/:id/commands`` (ProcessConfig)."""
    if args is not None and isinstance(args, (str, bytes)):
        raise TypeError("args must be a sequence of strings, not a string")
    return compact({
        "cmd": cmd,
        "args": list(args) if args is not None else None,
        "envs": envs or None,
        "cwd": cwd,
        "timeout": whole_seconds(timeout),
        "stdin": stdin,
        "background": True if background else None,
        "stream": True if stream else None,
        "tag": tag,
    })


def run_read_timeout(timeout: Optional[float], request_timeout: float) -> float:
    """How long to wait for a non-streamed command's answer: its own timeout
    (``None`` or ``0``: the server's default of 60 s) plus the ordinary
    request timeout."""
    return (timeout or 60) + request_timeout


class SSEDecoder:
    """Decodes a Server-Sent Events byte stream into JSON objects.

    :meth:`feed` takes raw chunks as they arrive (lines may be split across
    chunks) and returns the ``data`` objects of the events they complete.
    Comments (``: keepalive``) and ``event:``/``id:`` lines are skipped.
    """

    def __init__(self) -> None:
        self._partial: List[bytes] = []
        self._data: List[str] = []

    def feed(self, chunk: bytes) -> List[Dict[str, Any]]:
        events: List[Dict[str, Any]] = []
        if b"\n" not in chunk:
            if chunk:
                self._partial.append(chunk)
            return events
        lines = chunk.split(b"\n")
        if self._partial:
            lines[0] = b"".join(self._partial) + lines[0]
        rest = lines.pop()
        self._partial = [rest] if rest else []
        for raw in lines:
            event = self._line(raw.rstrip(b"\r").decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> Optional[Dict[str, Any]]:
        if line == "":
            if not self._data:
                return None
            text = "\n".join(self._data)
            self._data = []
            try:
                value = json.loads(text)
            except ValueError:
                return {"type": "error", "error": f"malformed stream event: {text[:200]!r}", "code": "bad_event"}
            return value if isinstance(value, dict) else None
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        return None


def expect_stream(resp: Any) -> None:
    """Refuses an answer that is not an event stream (a server that predates
    streaming answers a plain result)."""
    ctype = resp.headers.get("content-type", "")
    if not ctype.startswith("text/event-stream"):
        raise OpenSandboxError(f"expected an event stream, got {ctype or 'no content type'}: "
                               "the server may not support streaming yet", code="unsupported")


def background_pid(answer: Any) -> int:
    """The pid of a background start answer."""
    if not isinstance(answer, dict) or "pid" not in answer:
        raise OpenSandboxError("the server did not start a background process (no pid in its answer); "
                               "it may not support background processes yet", code="unsupported")
    return int(answer["pid"])


def watch_event(event: Dict[str, Any]) -> Optional[FilesystemEvent]:
    """The change a watch stream event reports; None for ``ready``; raises
    for an ``error`` event."""
    kind = event.get("type")
    if kind == "error":
        raise error_from_event(event)
    if kind == "ready" or not kind:
        return None
    return FilesystemEvent.from_json(event)


def decode_bytes(event: Dict[str, Any]) -> bytes:
    """The raw bytes carried by a stream event (base64 in ``data``)."""
    data = event.get("data") or ""
    return base64.b64decode(data) if data else b""


Pending = List[Tuple[OutputCallback, str]]


class CollectedOutput:
    """The output accessors a command handle (blocking or async) shares: it
    keeps an :class:`OutputCollector` in ``self._collector``."""

    _collector: "OutputCollector"

    @property
    def stdout(self) -> str:
        """Standard output received so far (UTF-8 decoded)."""
        return self._collector.stdout

    @property
    def stderr(self) -> str:
        """Standard error received so far (UTF-8 decoded)."""
        return self._collector.stderr

    @property
    def exit_code(self) -> Optional[int]:
        """The exit code once the process has exited and was seen, else None."""
        return self._collector.exit_code


class OutputCollector:
    """Follows a command's stream events and builds its :class:`CommandResult`.

    ``handle`` returns the callbacks to invoke (the caller runs them, awaiting
    them in async code) so one collector serves both clients. Bytes are
    decoded as UTF-8 incrementally, so a character split across two events
    is passed on whole.
    """

    def __init__(self, on_stdout: Optional[OutputCallback] = None,
                 on_stderr: Optional[OutputCallback] = None, pid: Optional[int] = None) -> None:
        self.pid = pid
        self._callbacks = {"stdout": on_stdout, "stderr": on_stderr}
        self._decoders = {k: codecs.getincrementaldecoder("utf-8")("replace") for k in ("stdout", "stderr")}
        self._parts: Dict[str, List[str]] = {"stdout": [], "stderr": []}
        self.exit_code: Optional[int] = None
        self.timed_out = False
        self.finished = False
        self._started = time.monotonic()

    def handle(self, event: Dict[str, Any]) -> Pending:
        """Takes one event; raises an OpenSandboxError for an ``error`` event."""
        kind = event.get("type")
        pending: Pending = []
        if kind == "start":
            if event.get("pid") is not None:
                self.pid = int(event["pid"])
        elif kind in ("stdout", "stderr"):
            self._add(kind, self._decoders[kind].decode(decode_bytes(event)), pending)
        elif kind == "exit":
            for name in ("stdout", "stderr"):
                self._add(name, self._decoders[name].decode(b"", final=True), pending)
            code = event.get("exitCode")
            self.exit_code = int(code) if code is not None else -1
            self.timed_out = bool(event.get("timedOut"))
            self.finished = True
        elif kind == "error":
            self.finished = True
            raise error_from_event(event)
        return pending

    def _add(self, name: str, text: str, pending: Pending) -> None:
        if not text:
            return
        self._parts[name].append(text)
        cb = self._callbacks[name]
        if cb is not None:
            pending.append((cb, text))

    @property
    def stdout(self) -> str:
        return "".join(self._parts["stdout"])

    @property
    def stderr(self) -> str:
        return "".join(self._parts["stderr"])

    def result(self) -> CommandResult:
        return CommandResult(
            exit_code=self.exit_code if self.exit_code is not None else -1,
            stdout=self.stdout,
            stderr=self.stderr,
            timed_out=self.timed_out,
            duration_ms=int((time.monotonic() - self._started) * 1000),
            pid=self.pid,
        )


def as_bytes(data: Any) -> Optional[bytes]:
    """``data`` as bytes when it is text or a bytes-like object, else None."""
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    return None


def source_length(f: Any) -> Optional[int]:
    """How many bytes are left to read in a file-like object, when knowable."""
    try:
        if hasattr(f, "fileno"):
            size = os.fstat(f.fileno()).st_size
            return max(size - f.tell(), 0)
    except (OSError, ValueError, AttributeError):
        pass
    try:
        pos = f.tell()
        end = f.seek(0, os.SEEK_END)
        f.seek(pos)
        return max(end - pos, 0)
    except (OSError, ValueError, AttributeError):
        return None


def read_chunks(f: Any, progress: Optional[ProgressCallback], total: Optional[int]) -> Iterable[bytes]:
    """Reads a file-like object in chunks, reporting progress after each."""
    sent = 0
    while True:
        chunk = f.read(CHUNK_SIZE)
        if not chunk:
            break
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8")
        sent += len(chunk)
        yield chunk
        if progress is not None:
            progress(sent, total)


def file_mode(mode: Optional[int | str]) -> Optional[str]:
    """A permission mode as the octal string the API takes (``0o755`` → ``"0755"``)."""
    if mode is None:
        return None
    if isinstance(mode, int):
        return format(mode, "04o")
    return str(mode)
