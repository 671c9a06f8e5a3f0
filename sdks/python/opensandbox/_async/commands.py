"""Commands and background processes of a sandbox (asyncio API)."""

from __future__ import annotations

import asyncio
import inspect
from typing import Dict, List, Literal, Optional, Sequence, Union, overload

import httpx

from .. import _wire
from .._wire import CollectedOutput, OutputCallback, OutputCollector, background_pid, expect_stream
from ..exceptions import NotFoundError, OpenSandboxError, OpenSandboxTimeoutError
from ..models import CommandResult, ProcessInfo
from .transport import AsyncTransport, mapped_errors, sse_events


async def follow_events(resp: httpx.Response, collector: OutputCollector, what: str) -> None:
    """Reads an SSE command stream into ``collector`` until ``exit``, running
    (and awaiting, when async) the output callbacks. Closes the response."""
    try:
        expect_stream(resp)
        with mapped_errors(what):
            async for event in sse_events(resp):
                for cb, text in collector.handle(event):
                    r = cb(text)
                    if inspect.isawaitable(r):
                        await r
                if collector.finished:
                    return
        if not collector.finished:
            raise OpenSandboxError(f"{what}: stream ended before the process exited", code="stream_ended")
    finally:
        await resp.aclose()


class AsyncCommandHandle(CollectedOutput):
    """A process running in the sandbox (async twin of ``CommandHandle``).

    Output is followed by a task from the first :meth:`wait` (or at once when
    callbacks were given, which may be plain or async functions).
    """

    def __init__(self, transport: AsyncTransport, pid: int, on_stdout: Optional[OutputCallback] = None,
                 on_stderr: Optional[OutputCallback] = None) -> None:
        self._t = transport
        self.pid = pid
        self._collector = OutputCollector(on_stdout, on_stderr, pid=pid)
        self._task: Optional[asyncio.Task] = None
        if on_stdout is not None or on_stderr is not None:
            self._follow()

    def __repr__(self) -> str:
        return f"AsyncCommandHandle(pid={self.pid}, exit_code={self.exit_code})"


    def _follow(self) -> asyncio.Task:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        return self._task

    async def _run(self) -> None:
        path = f"/sandboxes/{self._t.sandbox_id}/processes/{self.pid}/stream"
        resp = await self._t.data("GET", path, headers={"Accept": "text/event-stream"},
                                  timeout=_wire.STREAM_READ_TIMEOUT, stream=True)
        await follow_events(resp, self._collector, f"process {self.pid}")

    async def wait(self, timeout: Optional[float] = None) -> CommandResult:
        """Waits for the process to exit; past ``timeout`` seconds raises
        :class:`OpenSandboxTimeoutError` and the process keeps running."""
        task = self._follow()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except asyncio.TimeoutError as e:
            raise OpenSandboxTimeoutError(f"process {self.pid} still running after {timeout} s",
                                          code="timeout") from e
        return self._collector.result()

    async def kill(self) -> bool:
        """Kills the process group; False when the process was not found."""
        try:
            await self._t.data("DELETE", f"/sandboxes/{self._t.sandbox_id}/processes/{self.pid}")
        except NotFoundError as e:
            if e.code == "process_not_found":
                return False
            raise
        return True

    async def signal(self, signal: Union[str, int]) -> None:
        """Sends a signal (name or number) to the process."""
        await self._t.data("POST", f"/sandboxes/{self._t.sandbox_id}/processes/{self.pid}/signal",
                           json={"signal": str(signal)})

    async def send_stdin(self, data: Union[str, bytes]) -> None:
        """Writes ``data`` to the process's standard input."""
        payload = _wire.as_bytes(data)
        if payload is None:
            raise TypeError("data must be str or bytes")
        await self._t.data("POST", f"/sandboxes/{self._t.sandbox_id}/processes/{self.pid}/stdin",
                           content=payload, headers={"Content-Type": "application/octet-stream"})

    async def close_stdin(self) -> None:
        """Closes the process's standard input."""
        await self._t.data("DELETE", f"/sandboxes/{self._t.sandbox_id}/processes/{self.pid}/stdin")

    async def disconnect(self) -> None:
        """Stops following the output; the process keeps running."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, OpenSandboxError):
                pass


class AsyncCommands:
    """Runs commands in a sandbox: ``sbx.commands`` (async)."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    @overload
    async def run(
        self,
        cmd: str,
        args: Optional[Sequence[str]] = None,
        envs: Optional[Dict[str, str]] = None,
        cwd: Optional[str] = None,
        timeout: Optional[float] = None,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
        background: Literal[False] = False,
        stdin: Optional[str] = None,
        tag: Optional[str] = None,
    ) -> CommandResult: ...

    @overload
    async def run(
        self,
        cmd: str,
        args: Optional[Sequence[str]] = None,
        envs: Optional[Dict[str, str]] = None,
        cwd: Optional[str] = None,
        timeout: Optional[float] = None,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
        *,
        background: Literal[True],
        stdin: Optional[str] = None,
        tag: Optional[str] = None,
    ) -> AsyncCommandHandle: ...

    async def run(
        self,
        cmd: str,
        args: Optional[Sequence[str]] = None,
        envs: Optional[Dict[str, str]] = None,
        cwd: Optional[str] = None,
        timeout: Optional[float] = None,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
        background: bool = False,
        stdin: Optional[str] = None,
        tag: Optional[str] = None,
    ) -> Union[CommandResult, AsyncCommandHandle]:
        """Runs a command; see ``Commands.run``. Callbacks may be async."""
        sid = self._t.sandbox_id
        if background:
            body = _wire.process_body(cmd, args, envs, cwd, timeout, stdin, background=True, tag=tag)
            resp = await self._t.data("POST", f"/sandboxes/{sid}/commands", json=body)
            return AsyncCommandHandle(self._t, background_pid(resp.json()), on_stdout, on_stderr)
        if on_stdout is None and on_stderr is None:
            body = _wire.process_body(cmd, args, envs, cwd, timeout, stdin, tag=tag)
            read = _wire.run_read_timeout(timeout, self._t.config.request_timeout)
            resp = await self._t.data("POST", f"/sandboxes/{sid}/commands", json=body, timeout=read)
            return CommandResult.from_json(resp.json())
        body = _wire.process_body(cmd, args, envs, cwd, timeout, stdin, stream=True, tag=tag)
        resp = await self._t.data("POST", f"/sandboxes/{sid}/commands", json=body,
                                  headers={"Accept": "text/event-stream"}, timeout=_wire.STREAM_READ_TIMEOUT,
                                  stream=True)
        collector = OutputCollector(on_stdout, on_stderr)
        await follow_events(resp, collector, f"command {cmd!r}")
        return collector.result()

    async def list(self) -> List[ProcessInfo]:
        """The processes started in the background or in streaming mode."""
        resp = await self._t.data("GET", f"/sandboxes/{self._t.sandbox_id}/processes")
        return [ProcessInfo.from_json(p) for p in resp.json()]

    async def connect(self, pid: int, on_stdout: Optional[OutputCallback] = None,
                      on_stderr: Optional[OutputCallback] = None) -> AsyncCommandHandle:
        """A handle on a running (or recently finished) process by pid."""
        if not any(p.pid == pid for p in await self.list()):
            raise NotFoundError(f"process {pid} not found", status=404, code="process_not_found")
        return AsyncCommandHandle(self._t, pid, on_stdout, on_stderr)

    async def kill(self, pid: int) -> bool:
        """Kills a process by pid; False when it was not found."""
        return await AsyncCommandHandle(self._t, pid).kill()

    async def send_stdin(self, pid: int, data: Union[str, bytes]) -> None:
        """Writes to the standard input of a process by pid."""
        await AsyncCommandHandle(self._t, pid).send_stdin(data)
