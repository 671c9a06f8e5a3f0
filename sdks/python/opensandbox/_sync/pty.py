"""Interactive terminals in a sandbox (blocking API). The WebSocket runs on a
shared helper event-loop thread; ``on_data`` is called on that thread."""

from __future__ import annotations

from typing import Any, Dict, Optional, Union

from .. import _wire
from .._ws import DataCallback, LoopThread, PtyConnection
from ..exceptions import NotFoundError, OpenSandboxError
from .transport import SyncTransport


class PtyHandle:
    """A terminal session: output goes to ``on_data``; :meth:`send` types."""

    def __init__(self, transport: SyncTransport, session_id: str, conn: PtyConnection, loop: LoopThread) -> None:
        self._t = transport
        self.session_id = session_id
        self._conn = conn
        self._loop = loop

    def __repr__(self) -> str:
        return f"PtyHandle(session_id={self.session_id!r}, exit_code={self.exit_code})"

    @property
    def exit_code(self) -> Optional[int]:
        """The shell's exit code once it has exited, else None."""
        return self._conn.exit_code

    def _path(self, suffix: str = "") -> str:
        return f"/sandboxes/{self._t.sandbox_id}/pty/{self.session_id}{suffix}"

    def send(self, data: Union[bytes, str]) -> None:
        """Sends keystrokes (bytes, or text encoded as UTF-8) to the terminal."""
        payload = _wire.as_bytes(data)
        if payload is None:
            raise TypeError("data must be bytes or str")
        self._loop.run(self._conn.send(payload))

    def resize(self, cols: int, rows: int) -> None:
        """Changes the terminal size; programs see SIGWINCH."""
        self._t.data("POST", self._path("/resize"), json={"cols": cols, "rows": rows})

    def wait(self, timeout: Optional[float] = None) -> int:
        """Waits for the shell to exit and returns its exit code; past
        ``timeout`` seconds raises OpenSandboxTimeoutError."""
        return self._loop.run(self._conn.wait(timeout))

    def kill(self) -> bool:
        """Ends the session (the shell is killed). False when it was already gone."""
        try:
            self._t.data("DELETE", self._path())
        except NotFoundError as e:
            if e.code != "pty_not_found":
                raise
            return False
        finally:
            self._loop.run(self._conn.close())
        return True

    def disconnect(self) -> None:
        """Closes the WebSocket; the session lives on (see ``pty.connect``)."""
        self._loop.run(self._conn.close())


class Pty:
    """Terminal sessions of a sandbox: ``sbx.pty``."""

    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def create(self, cols: int = 80, rows: int = 24, on_data: Optional[DataCallback] = None,
               shell: Optional[str] = None, envs: Optional[Dict[str, str]] = None,
               cwd: Optional[str] = None) -> PtyHandle:
        """Starts a shell on a new terminal (``/bin/bash`` where it exists,
        else ``/bin/sh``; ``TERM=xterm-256color``) and connects to it.
        ``on_data`` receives the raw output bytes (on a helper thread)."""
        body: Dict[str, Any] = _wire.compact({"cols": cols, "rows": rows, "shell": shell,
                                              "envs": envs or None, "cwd": cwd})
        session_id = self._t.data("POST", f"/sandboxes/{self._t.sandbox_id}/pty", json=body).json()["sessionID"]
        try:
            return self.connect(session_id, on_data)
        except BaseException:
            try:
                self.kill(session_id)
            except OpenSandboxError:
                pass  # the connection error says more
            raise

    def connect(self, session_id: str, on_data: Optional[DataCallback] = None) -> PtyHandle:
        """Connects to an existing session; recent output (up to 64 KiB) is
        replayed to ``on_data`` first. Replaces any other connection to it."""
        url, headers = self._t.ws_target(f"/sandboxes/{self._t.sandbox_id}/pty/{session_id}")
        loop = LoopThread.shared()
        conn = PtyConnection(on_data)
        loop.run(conn.open(url, headers, self._t.config.request_timeout))
        return PtyHandle(self._t, session_id, conn, loop)

    def kill(self, session_id: str) -> bool:
        """Ends a session by id; False when it was not found."""
        try:
            self._t.data("DELETE", f"/sandboxes/{self._t.sandbox_id}/pty/{session_id}")
        except NotFoundError as e:
            if e.code != "pty_not_found":
                raise
            return False
        return True

    def resize(self, session_id: str, cols: int, rows: int) -> None:
        """Resizes a session by id."""
        self._t.data("POST", f"/sandboxes/{self._t.sandbox_id}/pty/{session_id}/resize",
                     json={"cols": cols, "rows": rows})
