"""Interactive terminals in a sandbox (asyncio API)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Union

from .. import _wire
from .._ws import DataCallback, PtyConnection
from ..exceptions import NotFoundError, OpenSandboxError
from .transport import AsyncTransport


class AsyncPtyHandle:
    """A terminal session: output goes to ``on_data``; :meth:`send` types."""

    def __init__(self, transport: AsyncTransport, session_id: str, conn: PtyConnection) -> None:
        self._t = transport
        self.session_id = session_id
        self._conn = conn

    def __repr__(self) -> str:
        return f"AsyncPtyHandle(session_id={self.session_id!r}, exit_code={self.exit_code})"

    @property
    def exit_code(self) -> Optional[int]:
        """The shell's exit code once it has exited, else None."""
        return self._conn.exit_code

    def _path(self, suffix: str = "") -> str:
        return f"/sandboxes/{self._t.sandbox_id}/pty/{self.session_id}{suffix}"

    async def send(self, data: Union[bytes, str]) -> None:
        """Sends keystrokes (bytes, or text encoded as UTF-8) to the terminal."""
        payload = _wire.as_bytes(data)
        if payload is None:
            raise TypeError("data must be bytes or str")
        await self._conn.send(payload)

    async def resize(self, cols: int, rows: int) -> None:
        """Changes the terminal size; programs see SIGWINCH."""
        await self._t.data("POST", self._path("/resize"), json={"cols": cols, "rows": rows})

    async def wait(self, timeout: Optional[float] = None) -> int:
        """Waits for the shell to exit and returns its exit code."""
        return await self._conn.wait(timeout)

    async def kill(self) -> bool:
        """Ends the session (the shell is killed). False when it was already gone."""
        try:
            await self._t.data("DELETE", self._path())
        except NotFoundError as e:
            if e.code != "pty_not_found":
                raise
            return False
        finally:
            await self._conn.close()
        return True

    async def disconnect(self) -> None:
        """Closes the WebSocket; the session lives on (see ``pty.connect``)."""
        await self._conn.close()


class AsyncPty:
    """Terminal sessions of a sandbox: ``sbx.pty``."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def create(self, cols: int = 80, rows: int = 24, on_data: Optional[DataCallback] = None,
                     shell: Optional[str] = None, envs: Optional[Dict[str, str]] = None,
                     cwd: Optional[str] = None) -> AsyncPtyHandle:
        """Starts a shell on a new terminal (``/bin/bash`` where it exists,
        else ``/bin/sh``; ``TERM=xterm-256color``) and connects to it.
        ``on_data`` (plain or async function) receives the raw output bytes."""
        body: Dict[str, Any] = _wire.compact({"cols": cols, "rows": rows, "shell": shell,
                                              "envs": envs or None, "cwd": cwd})
        resp = await self._t.data("POST", f"/sandboxes/{self._t.sandbox_id}/pty", json=body)
        session_id = resp.json()["sessionID"]
        try:
            return await self.connect(session_id, on_data)
        except BaseException:
            try:
                await self._t.data("DELETE", f"/sandboxes/{self._t.sandbox_id}/pty/{session_id}")
            except OpenSandboxError:
                pass  # the connection error below says more
            raise

    async def connect(self, session_id: str, on_data: Optional[DataCallback] = None) -> AsyncPtyHandle:
        """Connects to an existing session; recent output (up to 64 KiB) is
        replayed to ``on_data`` first. Replaces any other connection to it."""
        url, headers = await self._t.ws_target(f"/sandboxes/{self._t.sandbox_id}/pty/{session_id}")
        conn = PtyConnection(on_data)
        await conn.open(url, headers, self._t.config.request_timeout)
        return AsyncPtyHandle(self._t, session_id, conn)

    async def kill(self, session_id: str) -> bool:
        """Ends a session by id; False when it was not found."""
        try:
            await self._t.data("DELETE", f"/sandboxes/{self._t.sandbox_id}/pty/{session_id}")
        except NotFoundError as e:
            if e.code != "pty_not_found":
                raise
            return False
        return True

    async def resize(self, session_id: str, cols: int, rows: int) -> None:
        """Resizes a session by id."""
        await self._t.data("POST", f"/sandboxes/{self._t.sandbox_id}/pty/{session_id}/resize",
                           json={"cols": cols, "rows": rows})
