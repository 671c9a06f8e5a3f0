"""Files, transfers and watch against the real server."""

from __future__ import annotations

import hashlib
import io
import os
import threading

import pytest

from opensandbox import EntryInfo, InvalidArgumentError, NotFoundError
from conftest import poll

MiB = 1 << 20


def test_write_and_read_text_bytes_and_file_objects(sbx):
    info = sbx.files.write("/tmp/f/hello.txt", "héllo\n")
    assert isinstance(info, EntryInfo)
    assert (info.path, info.name, info.size, info.is_dir) == ("/tmp/f/hello.txt", "hello.txt", 7, False)
    assert sbx.files.read("/tmp/f/hello.txt") == "héllo\n"

    blob = bytes(range(256)) * 4
    sbx.files.write("/tmp/f/blob.bin", blob)
    assert sbx.files.read_bytes("/tmp/f/blob.bin") == blob
    buf = io.BytesIO()
    assert sbx.files.download("/tmp/f/blob.bin", buf) == len(blob) and buf.getvalue() == blob
    assert sbx.files.upload(io.BytesIO(blob[::-1]), "/tmp/f/up.bin").size == len(blob)
    assert sbx.files.read_bytes("/tmp/f/up.bin") == blob[::-1]

    sbx.files.write("/tmp/f/from-file.bin", io.BytesIO(b"streamed " * 1000))
    assert sbx.files.read_bytes("/tmp/f/from-file.bin") == b"streamed " * 1000

    sbx.files.write("/tmp/f/run.sh", "#!/bin/sh\necho ran\n", mode=0o755)
    assert sbx.files.stat("/tmp/f/run.sh").mode == "0755"
    assert sbx.commands.run("/tmp/f/run.sh").stdout == "ran\n"


def test_list_stat_exists_make_dir_rename_remove(sbx):
    d = sbx.files.make_dir("/tmp/tree/a/b")
    assert d.is_dir and d.type == "dir" and d.path == "/tmp/tree/a/b"
    sbx.files.write("/tmp/tree/top.txt", "1")
    sbx.files.write("/tmp/tree/a/b/deep.txt", "22")

    assert sorted(e.name for e in sbx.files.list("/tmp/tree")) == ["a", "top.txt"]
    deep = {e.path for e in sbx.files.list("/tmp/tree", depth=3)}
    assert {"/tmp/tree/a", "/tmp/tree/a/b", "/tmp/tree/a/b/deep.txt", "/tmp/tree/top.txt"} <= deep

    st = sbx.files.stat("/tmp/tree/a/b/deep.txt")
    assert (st.size, st.is_dir, st.type) == (2, False, "file") and st.mod_time is not None
    assert sbx.files.exists("/tmp/tree/top.txt") and not sbx.files.exists("/tmp/tree/nope")

    moved = sbx.files.rename("/tmp/tree/top.txt", "/tmp/tree/a/moved.txt")
    assert moved.path == "/tmp/tree/a/moved.txt"
    assert not sbx.files.exists("/tmp/tree/top.txt")
    assert sbx.files.read("/tmp/tree/a/moved.txt") == "1"

    sbx.files.remove("/tmp/tree/a")
    assert not sbx.files.exists("/tmp/tree/a/b/deep.txt")
    assert [e.name for e in sbx.files.list("/tmp/tree")] == []


def test_file_errors_are_typed(sbx):
    with pytest.raises(NotFoundError) as e:
        sbx.files.read("/tmp/does/not/exist")
    assert (e.value.status, e.value.code) == (404, "file_not_found")
    sbx.files.make_dir("/tmp/adir")
    with pytest.raises(InvalidArgumentError) as e:
        sbx.files.read("/tmp/adir")
    assert e.value.code == "is_a_directory"
    with pytest.raises(NotFoundError):
        sbx.files.stat("/tmp/nope")


def test_100_mib_upload_and_download_keep_every_byte(sbx, tmp_path):
    src = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with open(src, "wb") as f:
        for i in range(100):
            chunk = os.urandom(MiB)
            digest.update(chunk)
            f.write(chunk)
    sha = digest.hexdigest()

    sent = []
    info = sbx.files.upload(src, "/tmp/big/big.bin", on_progress=lambda n, total: sent.append((n, total)))
    assert info.size == 100 * MiB
    assert sent[-1] == (100 * MiB, 100 * MiB) and len(sent) >= 10
    assert sbx.commands.run("sha256sum /tmp/big/big.bin").stdout.split()[0] == sha

    dest = tmp_path / "back.bin"
    got = []
    assert sbx.files.download("/tmp/big/big.bin", dest, on_progress=lambda n, total: got.append((n, total))) \
        == 100 * MiB
    assert got[-1] == (100 * MiB, 100 * MiB)
    h = hashlib.sha256()
    with open(dest, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    assert h.hexdigest() == sha
    sbx.files.remove("/tmp/big")


def test_watch_reports_changes(sbx):
    sbx.files.make_dir("/tmp/watched/sub")
    seen = []
    lock = threading.Lock()

    def on_event(ev):
        with lock:
            seen.append(ev)

    handle = sbx.files.watch("/tmp/watched", recursive=True, on_event=on_event)
    try:
        sbx.files.write("/tmp/watched/new.txt", "x")
        sbx.files.write("/tmp/watched/sub/inner.txt", "y")
        sbx.files.remove("/tmp/watched/new.txt")

        def has(kind, path):
            with lock:
                return any(e.type == kind and e.path == path for e in seen)

        poll(lambda: has("create", "/tmp/watched/new.txt"), what="create event")
        poll(lambda: has("create", "/tmp/watched/sub/inner.txt"), what="recursive create event")
        poll(lambda: has("remove", "/tmp/watched/new.txt"), what="remove event")
        assert all(not e.is_dir for e in seen if e.path.endswith(".txt"))
        assert handle.running
    finally:
        handle.stop()
    assert not handle.running and handle.error is None


def test_watch_as_iterator(sbx):
    sbx.files.make_dir("/tmp/iterwatch")
    with sbx.files.watch("/tmp/iterwatch") as handle:
        sbx.commands.run("touch /tmp/iterwatch/a.txt")  # after watch() returns, the watch is in place
        first = next(iter(handle))
    assert (first.type, first.path, first.name) == ("create", "/tmp/iterwatch/a.txt", "a.txt")


def test_watch_missing_directory_is_not_found(sbx):
    with pytest.raises(NotFoundError):
        sbx.files.watch("/tmp/no-such-dir-to-watch")
