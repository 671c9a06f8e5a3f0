"""The PTY WebSocket (asyncio, on the ``websockets`` package): binary frames
carry terminal bytes, text frames JSON control messages. Used directly by the
async client and through a helper event-loop thread by the sync client."""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
from typing import Any, Callable, Coroutine, Dict, Optional, TypeVar

import websockets
import websockets.exceptions

from .exceptions import NetworkError, OpenSandboxError, OpenSandboxTimeoutError, error_class

T = TypeVar("T")
DataCallback = Callable[[bytes], Any]


class PtyConnection:
    """One WebSocket on a terminal session."""

    def __init__(self, on_data: Optional[DataCallback]) -> None:
        self._on_data = on_data
        self._ws: Any = None
        self._reader: Optional[asyncio.Task] = None
        self._done: Optional[asyncio.Event] = None
        self.exit_code: Optional[int] = None
        self.error: Optional[BaseException] = None

    async def open(self, url: str, headers: Dict[str, str], open_timeout: float) -> None:
        """Connects, refusing bad credentials or an unknown session with a typed error."""
        try:
            self._ws = await websockets.connect(  # type: ignore[attr-defined]
                url, extra_headers=headers, open_timeout=open_timeout, max_size=None,
                compression=None, ping_interval=20, ping_timeout=60)
        except websockets.exceptions.InvalidStatusCode as e:
            cls = error_class(e.status_code, None, True)
            raise cls(f"terminal connection refused with HTTP {e.status_code}", status=e.status_code) from e
        except asyncio.TimeoutError as e:
            raise OpenSandboxTimeoutError("terminal connection timed out", code="timeout") from e
        except (OSError, websockets.exceptions.WebSocketException) as e:
            raise NetworkError(f"terminal connection failed: {e}", code="network_error") from e
        self._done = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self._done is not None
        try:
            async for msg in self._ws:
                if isinstance(msg, bytes):
                    if self._on_data is not None:
                        r = self._on_data(msg)
                        if inspect.isawaitable(r):
                            await r
                    continue
                try:
                    ctl = json.loads(msg)
                except ValueError:
                    continue
                if isinstance(ctl, dict) and ctl.get("type") == "exit":
                    code = ctl.get("exitCode")
                    self.exit_code = int(code) if code is not None else -1
                elif isinstance(ctl, dict) and ctl.get("type") == "error":
                    cls = error_class(None, ctl.get("code"), True)
                    self.error = cls(str(ctl.get("error") or "terminal failed"), code=ctl.get("code"))
        except websockets.exceptions.ConnectionClosed:
            pass
        except Exception as e:  # a failing on_data callback ends the session's reader
            self.error = e
        finally:
            self._done.set()

    async def send(self, data: bytes) -> None:
        try:
            await self._ws.send(data)
        except websockets.exceptions.ConnectionClosed as e:
            raise OpenSandboxError("terminal connection is closed", code="pty_closed") from e

    async def send_control(self, msg: Dict[str, Any]) -> None:
        try:
            await self._ws.send(json.dumps(msg))
        except websockets.exceptions.ConnectionClosed as e:
            raise OpenSandboxError("terminal connection is closed", code="pty_closed") from e

    async def wait(self, timeout: Optional[float]) -> int:
        assert self._done is not None
        try:
            await asyncio.wait_for(self._done.wait(), timeout)
        except asyncio.TimeoutError as e:
            raise OpenSandboxTimeoutError(f"terminal still running after {timeout} s", code="timeout") from e
        if self.error is not None:
            raise self.error
        if self.exit_code is None:
            raise OpenSandboxError("terminal connection closed without an exit status", code="pty_disconnected")
        return self.exit_code

    @property
    def closed(self) -> bool:
        return self._done is None or self._done.is_set()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._reader), 5)
            except asyncio.TimeoutError:
                self._reader.cancel()


class LoopThread:
    """An asyncio loop on a daemon thread, for the sync client's WebSockets."""

    _instance: Optional["LoopThread"] = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="opensandbox-ws", daemon=True)
        self._thread.start()

    @classmethod
    def shared(cls) -> "LoopThread":
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def run(self, coro: Coroutine[Any, Any, T], timeout: Optional[float] = None) -> T:
        """Runs ``coro`` on the loop and waits for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)
