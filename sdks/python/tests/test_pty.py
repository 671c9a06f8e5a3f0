"""Interactive terminals against the real server (base template: bash)."""

from __future__ import annotations

import threading

import pytest

from opensandbox import NotFoundError
from conftest import poll


class Screen:
    """Collects what a terminal prints."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._lock = threading.Lock()

    def __call__(self, data: bytes) -> None:
        with self._lock:
            self._buf += data

    def text(self) -> str:
        with self._lock:
            return self._buf.decode("utf-8", "replace")


def test_pty_session_with_resize_and_exit_code(base_sbx):
    screen = Screen()
    term = base_sbx.pty.create(cols=80, rows=24, on_data=screen)
    try:
        term.send("stty size; echo TERM=$TERM\n")
        poll(lambda: "24 80" in screen.text(), what="stty size 24 80")
        poll(lambda: "TERM=xterm-256color" in screen.text(), what="TERM")
        term.resize(cols=120, rows=40)
        term.send(b"stty size\n")
        poll(lambda: "40 120" in screen.text(), what="stty size after resize")
        term.send("exit 3\n")
        assert term.wait(timeout=20) == 3
        assert term.exit_code == 3
    finally:
        term.kill()


def test_pty_kill_and_reconnect(base_sbx):
    screen = Screen()
    term = base_sbx.pty.create(on_data=screen)
    term.send("echo marker-$((6*7))\n")
    poll(lambda: "marker-42" in screen.text(), what="echo")
    term.disconnect()  # the session lives on
    replay = Screen()
    again = base_sbx.pty.connect(term.session_id, on_data=replay)
    poll(lambda: "marker-42" in replay.text(), what="scrollback replay")
    assert again.kill() is True
    assert base_sbx.pty.kill(term.session_id) is False
    with pytest.raises(NotFoundError):
        base_sbx.pty.resize(term.session_id, 100, 30)
