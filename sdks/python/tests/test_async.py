"""The asyncio client against the real server: every method once."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import time

import pytest

from opensandbox import (
    AsyncCommandHandle,
    AsyncSandbox,
    AuthenticationError,
    InvalidArgumentError,
    NotFoundError,
    OpenSandboxTimeoutError,
    SandboxGoneError,
)


async def apoll(check, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        await asyncio.sleep(0.02)


def test_async_lifecycle():
    async def main():
        sbx = await AsyncSandbox.create(template="busybox", timeout=120, envs={"X": "y"},
                                        metadata={"suite": "async"}, memory_mb=256)
        try:
            info = await sbx.get_info()
            assert (info.status, info.metadata, info.memory_mb) == ("running", {"suite": "async"}, 256)
            assert sbx.sandbox_id in {s.sandbox_id for s in await AsyncSandbox.list()}
            await sbx.set_timeout(60)
            assert (await sbx.get_info()).end_at < info.end_at
            assert await sbx.is_running()
            other = await AsyncSandbox.connect(sbx.sandbox_id)
            assert (await other.commands.run("echo $X")).stdout == "y\n"
            await other.close()
        finally:
            assert await sbx.kill() is True
        assert await sbx.is_running() is False
        assert await sbx.kill() is False
        with pytest.raises(SandboxGoneError):
            await sbx.commands.run("true")
        await sbx.close()
        with pytest.raises(NotFoundError):
            await AsyncSandbox.connect(sbx.sandbox_id)
        with pytest.raises(InvalidArgumentError):
            await AsyncSandbox.create(template="no-such-template")
        with pytest.raises(AuthenticationError):
            await AsyncSandbox.list(api_key="wrong-key")

    asyncio.run(main())


def test_async_commands_streaming_and_background():
    async def main():
        async with await AsyncSandbox.create(template="busybox") as sbx:
            r = await sbx.commands.run("echo a; echo b >&2; exit 2", cwd="/tmp")
            assert (r.exit_code, r.stdout, r.stderr) == (2, "a\n", "b\n")
            assert (await sbx.commands.run("cat", stdin="in")).stdout == "in"

            got = []

            async def on_out(text):  # async callbacks are awaited
                got.append(text)

            r = await sbx.commands.run("echo one; sleep 0.3; echo two", on_stdout=on_out,
                                       on_stderr=got.append)
            assert (r.exit_code, got, r.stdout) == (0, ["one\n", "two\n"], "one\ntwo\n")

            h = await sbx.commands.run("read a; echo got:$a; cat", background=True)
            assert isinstance(h, AsyncCommandHandle)
            assert h.pid in {p.pid for p in await sbx.commands.list()}
            await h.send_stdin("x\n")
            await h.send_stdin(b"rest")
            with pytest.raises(OpenSandboxTimeoutError):
                await h.wait(timeout=0.3)  # cat still waits for stdin
            await h.close_stdin()
            assert (await h.wait(timeout=20)).stdout == "got:x\nrest"

            sleeper = await sbx.commands.run("echo zz; sleep 60", background=True)
            seen = []
            again = await sbx.commands.connect(sleeper.pid, on_stdout=seen.append)
            await apoll(lambda: seen == ["zz\n"], what="replayed output")
            assert await again.kill() is True
            assert (await again.wait(timeout=20)).exit_code != 0
            with pytest.raises(NotFoundError):
                await sbx.commands.connect(999999)

    asyncio.run(main())


def test_async_files_transfer_and_watch(tmp_path):
    async def main():
        async with await AsyncSandbox.create(template="busybox") as sbx:
            f = sbx.files
            assert (await f.write("/tmp/d/t.txt", "text")).size == 4
            assert await f.read("/tmp/d/t.txt") == "text"
            await f.write("/tmp/d/b.bin", io.BytesIO(b"\x00\xff" * 10))
            assert await f.read_bytes("/tmp/d/b.bin") == b"\x00\xff" * 10
            assert (await f.make_dir("/tmp/d/sub")).is_dir
            assert sorted(e.name for e in await f.list("/tmp/d")) == ["b.bin", "sub", "t.txt"]
            assert (await f.stat("/tmp/d/t.txt")).size == 4
            assert (await f.rename("/tmp/d/t.txt", "/tmp/d/sub/t.txt")).path == "/tmp/d/sub/t.txt"
            assert not await f.exists("/tmp/d/t.txt") and await f.exists("/tmp/d/sub/t.txt")
            await f.remove("/tmp/d/sub")
            assert not await f.exists("/tmp/d/sub")

            data = os.urandom(3 << 20)
            src = tmp_path / "up.bin"
            src.write_bytes(data)
            progress = []
            await f.upload(src, "/tmp/up.bin", on_progress=lambda n, t: progress.append((n, t)))
            assert progress[-1] == (len(data), len(data))
            sha = (await sbx.commands.run("sha256sum /tmp/up.bin")).stdout.split()[0]
            assert sha == hashlib.sha256(data).hexdigest()
            dest = tmp_path / "down.bin"
            assert await f.download("/tmp/up.bin", dest) == len(data)
            assert dest.read_bytes() == data

            await f.make_dir("/tmp/w")
            events = []
            cb_watch = await f.watch("/tmp/w", on_event=events.append)
            it_watch = await f.watch("/tmp/w")
            await sbx.commands.run("touch /tmp/w/new.txt")
            first = await asyncio.wait_for(it_watch.__aiter__().__anext__(), 10)
            assert (first.type, first.path) == ("create", "/tmp/w/new.txt")
            await apoll(lambda: any(e.path == "/tmp/w/new.txt" for e in events), what="watch callback")
            assert cb_watch.running and it_watch.running
            await it_watch.stop()
            await cb_watch.stop()
            assert not cb_watch.running and not it_watch.running and cb_watch.error is None
            with pytest.raises(NotFoundError):
                await f.watch("/tmp/missing-dir")

    asyncio.run(main())


def test_async_pty_with_resize():
    async def main():
        async with await AsyncSandbox.create(template="base") as sbx:
            out = bytearray()
            term = await sbx.pty.create(cols=80, rows=24, on_data=out.extend)
            await term.send("stty size\n")
            await apoll(lambda: b"24 80" in out, what="stty size")
            await term.resize(100, 30)
            await term.send(b"stty size\n")
            await apoll(lambda: b"30 100" in out, what="stty size after resize")
            await term.send("exit 4\n")
            assert await term.wait(timeout=20) == 4
            other = await sbx.pty.create(on_data=out.extend)
            assert await sbx.pty.kill(other.session_id) is True
            await other.disconnect()

    asyncio.run(main())
