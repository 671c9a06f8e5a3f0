"""Files of a sandbox (blocking API)."""

from __future__ import annotations

import os
import threading
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Union

import httpx

from .. import _wire
from .._wire import ProgressCallback
from ..exceptions import NotFoundError, OpenSandboxError
from ..models import EntryInfo, FilesystemEvent
from .transport import SyncTransport, abort, mapped_errors, sse_events

PathLike = Union[str, "os.PathLike[str]"]
WriteData = Union[str, bytes, bytearray, memoryview, IO[bytes], IO[str]]


class WatchHandle:
    """A running watch on a sandbox directory.

    Iterate over it for :class:`FilesystemEvent` objects, or pass
    ``on_event`` to :meth:`Filesystem.watch` to get them on a helper thread.
    :meth:`stop` (or leaving a ``with`` block) removes the watch.
    """

    def __init__(self, resp: httpx.Response, events: Iterator[Dict[str, Any]], path: str) -> None:
        self._resp = resp
        self._events = events
        self._path = path
        self._stopped = False
        self._thread: Optional[threading.Thread] = None
        self.error: Optional[BaseException] = None
        """The error that ended a callback-driven watch, if any."""

    def __iter__(self) -> Iterator[FilesystemEvent]:
        try:
            with mapped_errors(f"watch {self._path}"):
                for event in self._events:
                    change = _wire.watch_event(event)
                    if change is not None:
                        yield change
        except OpenSandboxError:
            if not self._stopped:
                raise

    def _start(self, on_event: Callable[[FilesystemEvent], Any]) -> None:
        def run() -> None:
            try:
                for ev in self:
                    on_event(ev)
            except BaseException as e:
                self.error = e

        self._thread = threading.Thread(target=run, name=f"opensandbox-watch-{self._path}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Removes the watch (closes the stream). With ``on_event``, waits up
        to ``timeout`` seconds for the callback thread to finish, so no
        callback runs after ``stop`` returns."""
        self._stopped = True
        abort(self._resp)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def running(self) -> bool:
        """True until the watch is stopped or its stream ends."""
        if self._thread is not None:
            return self._thread.is_alive()
        return not self._stopped and not self._resp.is_closed

    def __enter__(self) -> "WatchHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class Filesystem:
    """Reads and writes files in a sandbox: ``sbx.files``."""

    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def _url(self, suffix: str = "") -> str:
        return f"/sandboxes/{self._t.sandbox_id}/files{suffix}"

    def read(self, path: str, encoding: str = "utf-8") -> str:
        """The content of a file as text."""
        return self.read_bytes(path).decode(encoding)

    def read_bytes(self, path: str) -> bytes:
        """The content of a file as bytes (held in memory; see :meth:`download`)."""
        return self._t.data("GET", self._url(), params={"path": path}).content

    def write(self, path: str, data: WriteData, mode: Optional[Union[int, str]] = None) -> EntryInfo:
        """Writes a file, creating its parent directories.

        ``data`` is text (UTF-8 encoded), bytes, or a file-like object opened
        for reading, which is streamed. ``mode`` sets the permissions
        (``0o755`` or ``"0755"``).
        """
        content = _wire.as_bytes(data)
        if content is not None:
            return self._put(path, content, len(content), mode)
        if hasattr(data, "read"):
            total = _wire.source_length(data)
            return self._put(path, _wire.read_chunks(data, None, total), total, mode)
        raise TypeError("data must be str, bytes or a readable file object")

    def upload(self, src: Union[PathLike, IO[bytes]], path: str, on_progress: Optional[ProgressCallback] = None,
               mode: Optional[Union[int, str]] = None) -> EntryInfo:
        """Streams a local file (a path or a binary file object) to ``path``
        in the sandbox without holding it in memory. ``on_progress(sent,
        total)`` is called after each chunk."""
        if hasattr(src, "read"):
            total = _wire.source_length(src)
            return self._put(path, _wire.read_chunks(src, on_progress, total), total, mode)
        with open(os.fspath(src), "rb") as f:
            total = os.fstat(f.fileno()).st_size
            return self._put(path, _wire.read_chunks(f, on_progress, total), total, mode)

    def _put(self, path: str, content: Any, length: Optional[int], mode: Optional[Union[int, str]]) -> EntryInfo:
        headers = {"Content-Type": "application/octet-stream"}
        if length is not None:
            headers["Content-Length"] = str(length)
        params = _wire.compact({"path": path, "mode": _wire.file_mode(mode)})
        resp = self._t.data("PUT", self._url(), params=params, content=content, headers=headers, timeout=None)
        return EntryInfo.from_json(resp.json())

    def download(self, path: str, dest: Union[PathLike, IO[bytes]],
                 on_progress: Optional[ProgressCallback] = None) -> int:
        """Streams a sandbox file into ``dest`` (a local path or a binary file
        object) without holding it in memory. ``on_progress(received,
        total)`` is called after each chunk. Returns the number of bytes."""
        resp = self._t.data("GET", self._url(), params={"path": path}, stream=True,
                            timeout=_wire.STREAM_READ_TIMEOUT)
        try:
            total_hdr = resp.headers.get("content-length")
            total = int(total_hdr) if total_hdr else None
            if hasattr(dest, "write"):
                return self._copy(resp, dest, on_progress, total)
            with open(os.fspath(dest), "wb") as f:
                return self._copy(resp, f, on_progress, total)
        finally:
            resp.close()

    @staticmethod
    def _copy(resp: httpx.Response, out: Any, on_progress: Optional[ProgressCallback], total: Optional[int]) -> int:
        got = 0
        with mapped_errors("download"):
            for chunk in resp.iter_bytes(_wire.CHUNK_SIZE):
                out.write(chunk)
                got += len(chunk)
                if on_progress is not None:
                    on_progress(got, total)
        if total is not None and got != total:
            raise OpenSandboxError(f"download ended after {got} of {total} bytes", code="short_read")
        return got

    def list(self, path: str, depth: int = 1) -> List[EntryInfo]:
        """The entries of a directory, down to ``depth`` levels."""
        resp = self._t.data("GET", self._url("/list"), params={"path": path, "depth": depth})
        return [EntryInfo.from_json(e) for e in resp.json()]

    def stat(self, path: str) -> EntryInfo:
        """Information about one entry (symlinks are not followed)."""
        return EntryInfo.from_json(self._t.data("GET", self._url("/stat"), params={"path": path}).json())

    def exists(self, path: str) -> bool:
        """True when ``path`` exists in the sandbox."""
        try:
            self.stat(path)
        except NotFoundError as e:
            if e.code == "file_not_found":
                return False
            raise
        return True

    def make_dir(self, path: str) -> EntryInfo:
        """Creates a directory and its parents (like ``mkdir -p``)."""
        return EntryInfo.from_json(self._t.data("POST", self._url("/mkdir"), params={"path": path}).json())

    def remove(self, path: str) -> None:
        """Removes a file or a directory tree."""
        self._t.data("DELETE", self._url(), params={"path": path})

    def rename(self, old_path: str, new_path: str) -> EntryInfo:
        """Renames (moves) an entry; returns the entry at its new path."""
        return EntryInfo.from_json(self._t.data("POST", self._url("/rename"),
                                                json={"from": old_path, "to": new_path}).json())

    def watch(self, path: str, recursive: bool = False,
              on_event: Optional[Callable[[FilesystemEvent], Any]] = None) -> WatchHandle:
        """Watches a directory for changes.

        Returns once the watch is in place, so every change made after the
        call is reported. Iterate over the handle, or pass ``on_event`` to be
        called on a helper thread. Call ``stop()`` when done.
        """
        params = {"path": path, "recursive": "true" if recursive else "false"}
        resp = self._t.data("GET", self._url("/watch"), params=params, stream=True,
                            headers={"Accept": "text/event-stream"}, timeout=None)
        events = sse_events(resp)
        try:
            _wire.expect_stream(resp)
            with mapped_errors(f"watch {path}"):
                for event in events:
                    if event.get("type") == "ready":
                        break
                    _wire.watch_event(event)  # raises for an error event
                else:
                    raise OpenSandboxError(f"watch {path}: stream ended before it was ready", code="stream_ended")
        except BaseException:
            resp.close()
            raise
        handle = WatchHandle(resp, events, path)
        if on_event is not None:
            handle._start(on_event)
        return handle
