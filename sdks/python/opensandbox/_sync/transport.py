"""Blocking HTTP transport: lifecycle calls to the API, data-path calls to the
sandbox's connect URL (or the API in combined mode), errors mapped to
OpenSandboxError, tokens refreshed before they expire."""

from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional

import httpx

from .. import _wire
from .._wire import ConnectionConfig, DataRoute, SSEDecoder
from ..exceptions import NetworkError, OpenSandboxError, OpenSandboxTimeoutError, error_from_answer

_UNSET: Any = object()


@contextmanager
def mapped_errors(what: str) -> Iterator[None]:
    """Turns httpx failures into SDK errors."""
    try:
        yield
    except httpx.TimeoutException as e:
        raise OpenSandboxTimeoutError(f"{what}: timed out ({type(e).__name__})", code="timeout") from e
    except httpx.HTTPError as e:
        raise NetworkError(f"{what}: {e or type(e).__name__}", code="network_error") from e


def raise_for_answer(resp: httpx.Response, sandbox_scoped: bool) -> None:
    """Raises the SDK error for a non-2xx answer (reading its body first)."""
    if resp.status_code < 400:
        return
    try:
        body = resp.read()
    except httpx.HTTPError:
        body = b""
    finally:
        resp.close()
    raise error_from_answer(resp.status_code, body, sandbox_scoped=sandbox_scoped,
                            request_id=resp.headers.get("x-request-id"))


def _timeout(timeout: Any) -> Any:
    if timeout is _UNSET:
        return httpx.USE_CLIENT_DEFAULT
    return httpx.Timeout(timeout, connect=_wire.CONNECT_TIMEOUT)


def sse_events(resp: httpx.Response) -> Iterator[Dict[str, Any]]:
    """The decoded events of a Server-Sent Events answer, as they arrive."""
    decoder = SSEDecoder()
    for chunk in resp.iter_bytes():
        yield from decoder.feed(chunk)


def abort(resp: httpx.Response) -> None:
    """Closes a streaming answer, waking a thread blocked reading it: the
    socket is shut down first (closing alone does not interrupt a read in
    another thread)."""
    stream = resp.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    try:
        resp.close()
    except (httpx.HTTPError, OSError, RuntimeError):
        pass


class SyncTransport:
    """HTTP clients of one sandbox (or of the API alone when ``sandbox_id`` is None)."""

    def __init__(self, config: ConnectionConfig, sandbox_id: Optional[str] = None,
                 route: Optional[DataRoute] = None) -> None:
        self.config = config
        self.sandbox_id = sandbox_id
        self.route = route or DataRoute()
        self._api = httpx.Client(
            base_url=config.api_url,
            headers=config.api_headers(),
            timeout=httpx.Timeout(config.request_timeout, connect=_wire.CONNECT_TIMEOUT),
            verify=_wire.ssl_context(),
        )
        self._data: Optional[httpx.Client] = None
        self._data_base: Optional[str] = None
        self._lock = threading.Lock()

    def close(self) -> None:
        self._api.close()
        if self._data is not None:
            self._data.close()

    def lifecycle(self, method: str, path: str, *, json: Any = None, params: Optional[Dict[str, Any]] = None,
                  sandbox_scoped: bool = True, timeout: Any = _UNSET) -> httpx.Response:
        """A control-plane call with the API key; raises on non-2xx answers."""
        with mapped_errors(f"{method} {path}"):
            req = self._api.build_request(method, path, json=json, params=params, timeout=_timeout(timeout))
            resp = self._api.send(req)
        raise_for_answer(resp, sandbox_scoped)
        return resp

    # -- data path -------------------------------------------------------

    def refresh_token(self, force: bool = False, rejected: Optional[str] = None) -> None:
        """Fetches a fresh sandbox token from the control plane when needed,
        or with ``force`` to replace the ``rejected`` one. One call at a time
        fetches; a call that needs no new token never waits for it."""
        if not force and not self.route.needs_token():
            return
        with self._lock:
            if force and self.route.token != rejected:
                return  # another call has replaced the rejected token meanwhile
            if not force and not self.route.needs_token():
                return
            resp = self.lifecycle("POST", f"/sandboxes/{self.sandbox_id}/token")
            self.route.update_from_json(resp.json())

    def _data_client(self) -> httpx.Client:
        if not self.route.direct:
            return self._api
        base = self.route.base_url(self.config)
        if self._data is None or self._data_base != base:
            if self._data is not None:
                self._data.close()
            self._data = httpx.Client(
                base_url=base, timeout=httpx.Timeout(self.config.request_timeout, connect=_wire.CONNECT_TIMEOUT),
                verify=_wire.ssl_context())
            self._data_base = base
        return self._data

    def data(self, method: str, path: str, *, json: Any = None, params: Optional[Dict[str, Any]] = None,
             content: Any = None, headers: Optional[Dict[str, str]] = None, timeout: Any = _UNSET,
             stream: bool = False) -> httpx.Response:
        """A data-path call for this sandbox; raises on non-2xx answers.

        With ``stream=True`` the body is left unread: the caller closes it.
        A rejected expired token is refreshed and the call retried once when
        the body can be sent again.
        """
        replayable = content is None or isinstance(content, (bytes, str))
        for attempt in (0, 1):
            self.refresh_token()
            client = self._data_client()
            token = self.route.token
            hdrs = dict(self.route.headers(self.config))
            if headers:
                hdrs.update(headers)
            with mapped_errors(f"{method} {path}"):
                req = client.build_request(method, path, json=json, params=params, content=content,
                                           headers=hdrs, timeout=_timeout(timeout))
                resp = client.send(req, stream=stream)
            if (resp.status_code == 401 and attempt == 0 and replayable and self.route.direct
                    and _is_token_expired(resp)):
                self.refresh_token(force=True, rejected=token)
                continue
            raise_for_answer(resp, True)
            return resp
        raise OpenSandboxError("unreachable")  # pragma: no cover

    def ws_target(self, path: str) -> tuple:
        """URL and headers for a WebSocket on the data path."""
        self.refresh_token()
        return _wire.ws_url(self.route.base_url(self.config)) + path, self.route.headers(self.config)


def _is_token_expired(resp: httpx.Response) -> bool:
    try:
        body = resp.read()
    except httpx.HTTPError:
        return False
    return b"token_expired" in body
