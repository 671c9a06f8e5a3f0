"""Typed errors of the OpenSandbox SDK.

Every failure the SDK reports is an :class:`OpenSandboxError` (or a subclass):
HTTP answers, broken connections, streams that end with an error event and
client-side deadlines alike. No ``httpx`` or ``websockets`` exception escapes.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Type

__all__ = [
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


class OpenSandboxError(Exception):
    """Base class of every SDK error.

    Attributes:
        message: human-readable description (the server's ``error`` field).
        status: HTTP status of the answer, or ``None`` for client-side failures
            and errors reported inside a stream.
        code: machine-readable code (the server's ``code`` field, e.g.
            ``file_not_found``), or an SDK code such as ``network_error``.
        request_id: the server's ``X-Request-Id`` when there was an answer.
    """

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        code: Optional[str] = None,
        request_id: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id

    def __str__(self) -> str:
        parts = [self.message]
        details = []
        if self.status is not None:
            details.append(f"status {self.status}")
        if self.code:
            details.append(f"code {self.code}")
        if details:
            parts.append(f"({', '.join(details)})")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status!r}, code={self.code!r})"


class NotFoundError(OpenSandboxError):
    """A sandbox, file, process or PTY session does not exist (404)."""


class SandboxGoneError(NotFoundError):
    """The sandbox this object stands for was killed or reached its timeout.

    Raised by methods of a :class:`Sandbox` whose sandbox no longer exists; a
    subclass of :class:`NotFoundError`.
    """


class AuthenticationError(OpenSandboxError):
    """Missing (401), wrong (403) or expired credentials."""


class RateLimitError(OpenSandboxError):
    """Too many requests or a quota reached (429, ``quota_exceeded``)."""


class InvalidArgumentError(OpenSandboxError):
    """The request was refused as invalid (400), e.g. an unknown template,
    a limit out of range, a directory where a file was expected, or a body over
    the size limit (413)."""


class ConflictError(OpenSandboxError):
    """The request conflicts with the current state (409), e.g. ``file_exists``."""


class PermissionDeniedError(OpenSandboxError):
    """The sandbox's file system refused the operation (``permission_denied``)."""


class UnavailableError(OpenSandboxError):
    """The service cannot take the request now (503: worker full, agent
    unreachable); retrying later may succeed."""


class NetworkError(OpenSandboxError):
    """The server could not be reached or the connection broke."""


class OpenSandboxTimeoutError(OpenSandboxError, TimeoutError):
    """A deadline passed: a request's timeout, a ``wait(timeout=...)`` or a
    504 from the server. Also a built-in :class:`TimeoutError`."""


_BY_STATUS: Dict[int, Type[OpenSandboxError]] = {
    400: InvalidArgumentError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    410: SandboxGoneError,
    413: InvalidArgumentError,
    429: RateLimitError,
    503: UnavailableError,
    504: OpenSandboxTimeoutError,
}

_BY_CODE: Dict[str, Type[OpenSandboxError]] = {
    "invalid_argument": InvalidArgumentError,
    "template_not_found": InvalidArgumentError,
    "is_a_directory": InvalidArgumentError,
    "not_a_directory": InvalidArgumentError,
    "body_too_large": InvalidArgumentError,
    "unauthenticated": AuthenticationError,
    "forbidden": AuthenticationError,
    "token_expired": AuthenticationError,
    "permission_denied": PermissionDeniedError,
    "sandbox_not_found": NotFoundError,
    "file_not_found": NotFoundError,
    "process_not_found": NotFoundError,
    "pty_not_found": NotFoundError,
    "file_exists": ConflictError,
    "quota_exceeded": RateLimitError,
    "rate_limited": RateLimitError,
    "worker_full": UnavailableError,
    "no_worker_available": UnavailableError,
    "no_capacity": UnavailableError,
    "agent_unreachable": UnavailableError,
    "timeout": OpenSandboxTimeoutError,
}


def error_class(status: Optional[int], code: Optional[str], sandbox_scoped: bool) -> Type[OpenSandboxError]:
    """Picks the error class for an HTTP status and/or an error code.

    ``sandbox_scoped`` is true when the call was made through an object that
    stands for one sandbox: its ``sandbox_not_found`` means the sandbox is gone.
    """
    if code == "sandbox_not_found" and sandbox_scoped:
        return SandboxGoneError
    if code and code in _BY_CODE:
        return _BY_CODE[code]
    if status is not None and status in _BY_STATUS:
        return _BY_STATUS[status]
    return OpenSandboxError


def error_from_answer(
    status: int,
    body: bytes,
    *,
    sandbox_scoped: bool = False,
    request_id: Optional[str] = None,
) -> OpenSandboxError:
    """Builds the error for a non-2xx answer from its status and JSON body."""
    message, code = "", None
    try:
        parsed: Any = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError):
        parsed = None
    if isinstance(parsed, dict):
        message = str(parsed.get("error") or parsed.get("message") or "")
        code = parsed.get("code") or None
    elif body:
        message = body[:500].decode("utf-8", "replace").strip()
    if not message:
        message = f"HTTP {status}"
    cls = error_class(status, code, sandbox_scoped)
    return cls(message, status=status, code=code, request_id=request_id)


def error_from_event(event: Dict[str, Any], *, sandbox_scoped: bool = True) -> OpenSandboxError:
    """Builds the error for an ``{"type": "error"}`` stream event."""
    code = event.get("code") or None
    cls = error_class(None, code, sandbox_scoped)
    return cls(str(event.get("error") or "stream failed"), code=code)
