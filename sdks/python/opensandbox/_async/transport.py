"""Asyncio HTTP transport: the async twin of ``_sync.transport``."""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from typing import Any, AsyncIterator, Dict, Iterator, Optional

import httpx

from .. import _wire
from .._wire import ConnectionConfig, DataRoute, SSEDecoder
from ..exceptions import NetworkError, OpenSandboxError, OpenSandboxTimeoutError, error_from_answer

_UNSET: Any = object()


@contextmanager
def mapped_errors(what: str) -> Iterator[None]:
    """Turns httpx failures (and asyncio timeouts) into SDK errors."""
    try:
        yield
    except (httpx.TimeoutException, asyncio.TimeoutError) as e:
        raise OpenSandboxTimeoutError(f"{what}: timed out ({type(e).__name__})", code="timeout") from e
    except httpx.HTTPError as e:
        raise NetworkError(f"{what}: {e or type(e).__name__}", code="network_error") from e


async def raise_for_answer(resp: httpx.Response, sandbox_scoped: bool) -> None:
    """Raises the SDK error for a non-2xx answer (reading its body first)."""
    if resp.status_code < 400:
        return
    try:
        body = await resp.aread()
    except httpx.HTTPError:
        body = b""
    finally:
        await resp.aclose()
    raise error_from_answer(resp.status_code, body, sandbox_scoped=sandbox_scoped,
                            request_id=resp.headers.get("x-request-id"))


async def sse_events(resp: httpx.Response) -> AsyncIterator[Dict[str, Any]]:
    """The decoded events of a Server-Sent Events answer, as they arrive."""
    decoder = SSEDecoder()
    async for chunk in resp.aiter_bytes():
        for event in decoder.feed(chunk):
            yield event


def _timeout(timeout: Any) -> Any:
    if timeout is _UNSET:
        return httpx.USE_CLIENT_DEFAULT
    return httpx.Timeout(timeout, connect=_wire.CONNECT_TIMEOUT)


class AsyncTransport:
    """Async HTTP clients of one sandbox (or of the API alone)."""

    def __init__(self, config: ConnectionConfig, sandbox_id: Optional[str] = None,
                 route: Optional[DataRoute] = None) -> None:
        self.config = config
        self.sandbox_id = sandbox_id
        self.route = route or DataRoute()
        self._api = httpx.AsyncClient(
            base_url=config.api_url,
            headers=config.api_headers(),
            timeout=httpx.Timeout(config.request_timeout, connect=_wire.CONNECT_TIMEOUT),
            verify=_wire.ssl_context(),
        )
        self._data: Optional[httpx.AsyncClient] = None
        self._data_base: Optional[str] = None
        self._lock: Optional[asyncio.Lock] = None

    async def close(self) -> None:
        await self._api.aclose()
        if self._data is not None:
            await self._data.aclose()

    async def lifecycle(self, method: str, path: str, *, json: Any = None, params: Optional[Dict[str, Any]] = None,
                        sandbox_scoped: bool = True, timeout: Any = _UNSET) -> httpx.Response:
        """A control-plane call with the API key; raises on non-2xx answers."""
        with mapped_errors(f"{method} {path}"):
            req = self._api.build_request(method, path, json=json, params=params, timeout=_timeout(timeout))
            resp = await self._api.send(req)
        await raise_for_answer(resp, sandbox_scoped)
        return resp

    async def refresh_token(self, force: bool = False, rejected: Optional[str] = None) -> None:
        """Fetches a fresh sandbox token when needed, or with ``force`` to
        replace the ``rejected`` one; see ``SyncTransport.refresh_token``."""
        if not force and not self.route.needs_token():
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if force and self.route.token != rejected:
                return  # another call has replaced the rejected token meanwhile
            if not force and not self.route.needs_token():
                return
            resp = await self.lifecycle("POST", f"/sandboxes/{self.sandbox_id}/token")
            self.route.update_from_json(resp.json())

    async def _data_client(self) -> httpx.AsyncClient:
        if not self.route.direct:
            return self._api
        base = self.route.base_url(self.config)
        if self._data is None or self._data_base != base:
            if self._data is not None:
                await self._data.aclose()
            self._data = httpx.AsyncClient(
                base_url=base, timeout=httpx.Timeout(self.config.request_timeout, connect=_wire.CONNECT_TIMEOUT),
                verify=_wire.ssl_context())
            self._data_base = base
        return self._data

    async def data(self, method: str, path: str, *, json: Any = None, params: Optional[Dict[str, Any]] = None,
                   content: Any = None, headers: Optional[Dict[str, str]] = None, timeout: Any = _UNSET,
                   stream: bool = False) -> httpx.Response:
        """A data-path call for this sandbox; see ``SyncTransport.data``."""
        replayable = content is None or isinstance(content, (bytes, str))
        for attempt in (0, 1):
            await self.refresh_token()
            client = await self._data_client()
            token = self.route.token
            hdrs = dict(self.route.headers(self.config))
            if headers:
                hdrs.update(headers)
            with mapped_errors(f"{method} {path}"):
                req = client.build_request(method, path, json=json, params=params, content=content,
                                           headers=hdrs, timeout=_timeout(timeout))
                resp = await client.send(req, stream=stream)
            if (resp.status_code == 401 and attempt == 0 and replayable and self.route.direct
                    and b"token_expired" in await resp.aread()):
                await self.refresh_token(force=True, rejected=token)
                continue
            await raise_for_answer(resp, True)
            return resp
        raise OpenSandboxError("unreachable")  # pragma: no cover

    async def ws_target(self, path: str) -> tuple:
        """URL and headers for a WebSocket on the data path."""
        await self.refresh_token()
        return _wire.ws_url(self.route.base_url(self.config)) + path, self.route.headers(self.config)
