"""Commands and background processes of a sandbox (blocking API)."""

from __future__ import annotations

import threading
from typing import Dict, List, Literal, Optional, Sequence, Union, overload

import httpx

from .. import _wire
from .._wire import CollectedOutput, OutputCallback, OutputCollector, background_pid, expect_stream
from ..exceptions import NotFoundError, OpenSandboxError, OpenSandboxTimeoutError
from ..models import CommandResult, ProcessInfo
from .transport import SyncTransport, abort, mapped_errors, sse_events


def follow_events(resp: httpx.Response, collector: OutputCollector, what: str) -> None:
    """Reads an SSE command stream into ``collector`` until ``exit``, running
    the output callbacks as text arrives. Closes the response."""
    try:
        expect_stream(resp)
        with mapped_errors(what):
            for event in sse_events(resp):
                for cb, text in collector.handle(event):
                    cb(text)
                if collector.finished:
                    return
        if not collector.finished:
            raise OpenSandboxError(f"{what}: stream ended before the process exited", code="stream_ended")
    finally:
        resp.close()


class CommandHandle(CollectedOutput):
    """A process running in the sandbox, started with ``background=True`` or
    found with :meth:`Commands.connect`.

    Output is followed on a helper thread from the first call to :meth:`wait`
    (or at once when output callbacks were given); :attr:`stdout` and
    :attr:`stderr` hold what arrived so far.
    """

    def __init__(self, transport: SyncTransport, pid: int, on_stdout: Optional[OutputCallback] = None,
                 on_stderr: Optional[OutputCallback] = None) -> None:
        self._t = transport
        self.pid = pid
        self._collector = OutputCollector(on_stdout, on_stderr, pid=pid)
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self._resp: Optional[httpx.Response] = None
        self._stopped = False
        self._start_lock = threading.Lock()
        if on_stdout is not None or on_stderr is not None:
            self._follow()

    def __repr__(self) -> str:
        return f"CommandHandle(pid={self.pid}, exit_code={self.exit_code})"


    def _follow(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name=f"opensandbox-process-{self.pid}", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        path = f"/sandboxes/{self._t.sandbox_id}/processes/{self.pid}/stream"
        try:
            resp = self._t.data("GET", path, headers={"Accept": "text/event-stream"},
                                timeout=_wire.STREAM_READ_TIMEOUT, stream=True)
            self._resp = resp
            follow_events(resp, self._collector, f"process {self.pid}")
        except BaseException as e:  # handed to wait()
            if not self._stopped:
                self._error = e

    def wait(self, timeout: Optional[float] = None) -> CommandResult:
        """Waits for the process to exit and returns its result.

        ``timeout`` (seconds) bounds the wait: past it an
        :class:`OpenSandboxTimeoutError` is raised and the process keeps
        running (call ``wait`` again, or :meth:`kill`). The output of a
        process started before the call is replayed (the last MiB of each
        stream at most).
        """
        self._follow()
        assert self._thread is not None
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise OpenSandboxTimeoutError(f"process {self.pid} still running after {timeout} s", code="timeout")
        if self._error is not None:
            raise self._error
        return self._collector.result()

    def kill(self) -> bool:
        """Kills the process (SIGKILL to its process group). Returns False when
        it was not found (already gone)."""
        try:
            self._t.data("DELETE", f"/sandboxes/{self._t.sandbox_id}/processes/{self.pid}")
        except NotFoundError as e:
            if e.code == "process_not_found":
                return False
            raise
        return True

    def signal(self, signal: Union[str, int]) -> None:
        """Sends a signal (a name such as ``"SIGTERM"`` or a number) to the process."""
        self._t.data("POST", f"/sandboxes/{self._t.sandbox_id}/processes/{self.pid}/signal",
                     json={"signal": str(signal)})

    def send_stdin(self, data: Union[str, bytes]) -> None:
        """Writes ``data`` to the process's standard input."""
        payload = _wire.as_bytes(data)
        if payload is None:
            raise TypeError("data must be str or bytes")
        self._t.data("POST", f"/sandboxes/{self._t.sandbox_id}/processes/{self.pid}/stdin", content=payload,
                     headers={"Content-Type": "application/octet-stream"})

    def close_stdin(self) -> None:
        """Closes the process's standard input (it reads end of file)."""
        self._t.data("DELETE", f"/sandboxes/{self._t.sandbox_id}/processes/{self.pid}/stdin")

    def disconnect(self) -> None:
        """Stops following the output; the process keeps running."""
        self._stopped = True
        if self._resp is not None:
            abort(self._resp)


class Commands:
    """Runs commands in a sandbox: ``sbx.commands``."""

    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    @overload
    def run(
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
    def run(
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
    ) -> CommandHandle: ...

    def run(
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
    ) -> Union[CommandResult, CommandHandle]:
        """Runs a command.

        Without ``args``, ``cmd`` runs through ``/bin/sh -c``; with them,
        ``cmd`` and ``args`` run as an argv. ``envs`` merge over the
        sandbox's, ``timeout`` (seconds, rounded up to whole ones; server default 60,
        for background processes none) kills the process group and yields exit code 124 with
        ``timed_out``.
        ``stdin`` is written to the process and then closed (for background
        processes, omit it to keep stdin open for ``send_stdin``).

        Returns a :class:`CommandResult` once the command exits, streaming its
        output to ``on_stdout``/``on_stderr`` (text chunks) as it comes when
        given. With ``background=True`` returns a :class:`CommandHandle` at
        once. A non-zero exit code is not an error: check ``exit_code``.
        """
        sid = self._t.sandbox_id
        if background:
            body = _wire.process_body(cmd, args, envs, cwd, timeout, stdin, background=True, tag=tag)
            pid = background_pid(self._t.data("POST", f"/sandboxes/{sid}/commands", json=body).json())
            return CommandHandle(self._t, pid, on_stdout, on_stderr)
        if on_stdout is None and on_stderr is None:
            body = _wire.process_body(cmd, args, envs, cwd, timeout, stdin, tag=tag)
            read = _wire.run_read_timeout(timeout, self._t.config.request_timeout)
            return CommandResult.from_json(self._t.data("POST", f"/sandboxes/{sid}/commands", json=body,
                                                        timeout=read).json())
        body = _wire.process_body(cmd, args, envs, cwd, timeout, stdin, stream=True, tag=tag)
        resp = self._t.data("POST", f"/sandboxes/{sid}/commands", json=body,
                            headers={"Accept": "text/event-stream"}, timeout=_wire.STREAM_READ_TIMEOUT,
                            stream=True)
        collector = OutputCollector(on_stdout, on_stderr)
        follow_events(resp, collector, f"command {cmd!r}")
        return collector.result()

    def list(self) -> List[ProcessInfo]:
        """The processes started in the background or in streaming mode
        (finished ones are kept for a while)."""
        resp = self._t.data("GET", f"/sandboxes/{self._t.sandbox_id}/processes")
        return [ProcessInfo.from_json(p) for p in resp.json()]

    def connect(self, pid: int, on_stdout: Optional[OutputCallback] = None,
                on_stderr: Optional[OutputCallback] = None) -> CommandHandle:
        """A handle on a process that is running (or recently finished).
        Raises :class:`NotFoundError` for an unknown pid."""
        if not any(p.pid == pid for p in self.list()):
            raise NotFoundError(f"process {pid} not found", status=404, code="process_not_found")
        return CommandHandle(self._t, pid, on_stdout, on_stderr)

    def kill(self, pid: int) -> bool:
        """Kills a process by pid; False when it was not found."""
        return CommandHandle(self._t, pid).kill()

    def send_stdin(self, pid: int, data: Union[str, bytes]) -> None:
        """Writes to the standard input of a process by pid."""
        CommandHandle(self._t, pid).send_stdin(data)
