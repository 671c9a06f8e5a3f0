"""Files of a sandbox (asyncio API)."""

from __future__ import annotations

import asyncio
import inspect
import os
from typing import IO, Any, AsyncIterator, Callable, Dict, List, Optional, Union

import httpx

from .. import _wire
from .._wire import ProgressCallback
from ..exceptions import NotFoundError, OpenSandboxError
from ..models import EntryInfo, FilesystemEvent
from .transport import AsyncTransport, mapped_errors, sse_events

PathLike = Union[str, "os.PathLike[str]"]
WriteData = Union[str, bytes, bytearray, memoryview, IO[bytes], IO[str]]


async def _chunks(f: Any, progress: Optional[ProgressCallback], total: Optional[int]) -> AsyncIterator[bytes]:
    """Reads a (blocking) file object in chunks off the event loop."""
    sent = 0
    while True:
        chunk = await asyncio.to_thread(f.read, _wire.CHUNK_SIZE)
        if not chunk:
            break
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8")
        sent += len(chunk)
        yield chunk
        if progress is not None:
            r = progress(sent, total)
            if inspect.isawaitable(r):
                await r


class AsyncWatchHandle:
    """A running watch (async twin of ``WatchHandle``): ``async for ev in handle``."""

    def __init__(self, resp: httpx.Response, events: AsyncIterator[Dict[str, Any]], path: str) -> None:
        self._resp = resp
        self._events = events
        self._path = path
        self._stopped = False
        self._task: Optional[asyncio.Task] = None
        self.error: Optional[BaseException] = None
        """The error that ended a callback-driven watch, if any."""

    async def __aiter__(self) -> AsyncIterator[FilesystemEvent]:
        try:
            with mapped_errors(f"watch {self._path}"):
                async for event in self._events:
                    change = _wire.watch_event(event)
                    if change is not None:
                        yield change
        except OpenSandboxError:
            if not self._stopped:
                raise

    def _start(self, on_event: Callable[[FilesystemEvent], Any]) -> None:
        async def run() -> None:
            try:
                async for ev in self:
                    r = on_event(ev)
                    if inspect.isawaitable(r):
                        await r
            except asyncio.CancelledError:
                raise
            except BaseException as e:
                self.error = e

        self._task = asyncio.ensure_future(run())

    async def stop(self) -> None:
        """Removes the watch (closes the stream)."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self._resp.aclose()

    @property
    def running(self) -> bool:
        """True until the watch is stopped or its stream ends."""
        if self._task is not None:
            return not self._task.done()
        return not self._stopped and not self._resp.is_closed

    async def __aenter__(self) -> "AsyncWatchHandle":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


class AsyncFilesystem:
    """Reads and writes files in a sandbox: ``sbx.files`` (async)."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    def _url(self, suffix: str = "") -> str:
        return f"/sandboxes/{self._t.sandbox_id}/files{suffix}"

    async def read(self, path: str, encoding: str = "utf-8") -> str:
        """The content of a file as text."""
        return (await self.read_bytes(path)).decode(encoding)

    async def read_bytes(self, path: str) -> bytes:
        """The content of a file as bytes."""
        return (await self._t.data("GET", self._url(), params={"path": path})).content

    async def write(self, path: str, data: WriteData, mode: Optional[Union[int, str]] = None) -> EntryInfo:
        """Writes a file (text, bytes or a readable file object, streamed)."""
        content = _wire.as_bytes(data)
        if content is not None:
            return await self._put(path, content, len(content), mode)
        if hasattr(data, "read"):
            total = _wire.source_length(data)
            return await self._put(path, _chunks(data, None, total), total, mode)
        raise TypeError("data must be str, bytes or a readable file object")

    async def upload(self, src: Union[PathLike, IO[bytes]], path: str,
                     on_progress: Optional[ProgressCallback] = None,
                     mode: Optional[Union[int, str]] = None) -> EntryInfo:
        """Streams a local file (path or binary file object) to ``path``."""
        if hasattr(src, "read"):
            total = _wire.source_length(src)
            return await self._put(path, _chunks(src, on_progress, total), total, mode)
        with open(os.fspath(src), "rb") as f:
            total = os.fstat(f.fileno()).st_size
            return await self._put(path, _chunks(f, on_progress, total), total, mode)

    async def _put(self, path: str, content: Any, length: Optional[int],
                   mode: Optional[Union[int, str]]) -> EntryInfo:
        headers = {"Content-Type": "application/octet-stream"}
        if length is not None:
            headers["Content-Length"] = str(length)
        params = _wire.compact({"path": path, "mode": _wire.file_mode(mode)})
        resp = await self._t.data("PUT", self._url(), params=params, content=content, headers=headers, timeout=None)
        return EntryInfo.from_json(resp.json())

    async def download(self, path: str, dest: Union[PathLike, IO[bytes]],
                       on_progress: Optional[ProgressCallback] = None) -> int:
        """Streams a sandbox file into ``dest``; returns the number of bytes."""
        resp = await self._t.data("GET", self._url(), params={"path": path}, stream=True,
                                  timeout=_wire.STREAM_READ_TIMEOUT)
        try:
            total_hdr = resp.headers.get("content-length")
            total = int(total_hdr) if total_hdr else None
            if hasattr(dest, "write"):
                return await self._copy(resp, dest, on_progress, total)
            with open(os.fspath(dest), "wb") as f:
                return await self._copy(resp, f, on_progress, total)
        finally:
            await resp.aclose()

    @staticmethod
    async def _copy(resp: httpx.Response, out: Any, on_progress: Optional[ProgressCallback],
                    total: Optional[int]) -> int:
        got = 0
        with mapped_errors("download"):
            async for chunk in resp.aiter_bytes(_wire.CHUNK_SIZE):
                await asyncio.to_thread(out.write, chunk)
                got += len(chunk)
                if on_progress is not None:
                    r = on_progress(got, total)
                    if inspect.isawaitable(r):
                        await r
        if total is not None and got != total:
            raise OpenSandboxError(f"download ended after {got} of {total} bytes", code="short_read")
        return got

    async def list(self, path: str, depth: int = 1) -> List[EntryInfo]:
        """The entries of a directory, down to ``depth`` levels."""
        resp = await self._t.data("GET", self._url("/list"), params={"path": path, "depth": depth})
        return [EntryInfo.from_json(e) for e in resp.json()]

    async def stat(self, path: str) -> EntryInfo:
        """Information about one entry."""
        return EntryInfo.from_json((await self._t.data("GET", self._url("/stat"), params={"path": path})).json())

    async def exists(self, path: str) -> bool:
        """True when ``path`` exists in the sandbox."""
        try:
            await self.stat(path)
        except NotFoundError as e:
            if e.code == "file_not_found":
                return False
            raise
        return True

    async def make_dir(self, path: str) -> EntryInfo:
        """Creates a directory and its parents."""
        return EntryInfo.from_json((await self._t.data("POST", self._url("/mkdir"), params={"path": path})).json())

    async def remove(self, path: str) -> None:
        """Removes a file or a directory tree."""
        await self._t.data("DELETE", self._url(), params={"path": path})

    async def rename(self, old_path: str, new_path: str) -> EntryInfo:
        """Renames (moves) an entry."""
        resp = await self._t.data("POST", self._url("/rename"), json={"from": old_path, "to": new_path})
        return EntryInfo.from_json(resp.json())

    async def watch(self, path: str, recursive: bool = False,
                    on_event: Optional[Callable[[FilesystemEvent], Any]] = None) -> AsyncWatchHandle:
        """Watches a directory; returns once the watch is in place. Iterate
        with ``async for``, or pass ``on_event`` (plain or async) to run it in
        a task. Call ``await handle.stop()`` when done."""
        params = {"path": path, "recursive": "true" if recursive else "false"}
        resp = await self._t.data("GET", self._url("/watch"), params=params, stream=True,
                                  headers={"Accept": "text/event-stream"}, timeout=None)
        events = sse_events(resp)
        try:
            _wire.expect_stream(resp)
            with mapped_errors(f"watch {path}"):
                async for event in events:
                    if event.get("type") == "ready":
                        break
                    _wire.watch_event(event)  # raises for an error event
                else:
                    raise OpenSandboxError(f"watch {path}: stream ended before it was ready", code="stream_ended")
        except BaseException:
            await resp.aclose()
            raise
        handle = AsyncWatchHandle(resp, events, path)
        if on_event is not None:
            handle._start(on_event)
        return handle
