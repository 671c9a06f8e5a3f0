"""Commands, streaming and background processes against the real server."""

from __future__ import annotations

import threading
import time

import pytest

from opensandbox import CommandHandle, CommandResult, NotFoundError, OpenSandboxTimeoutError
from conftest import poll


def test_run_collects_output_and_exit_code(sbx):
    r = sbx.commands.run("echo out; echo err >&2; exit 3")
    assert isinstance(r, CommandResult)
    assert (r.exit_code, r.stdout, r.stderr, r.timed_out, r.ok) == (3, "out\n", "err\n", False, False)


def test_run_with_args_envs_cwd_and_stdin(sbx):
    r = sbx.commands.run("echo", args=["a  b", "$HOME", "*"])
    assert r.stdout == "a  b $HOME *\n"  # argv: no shell expansion
    assert sbx.commands.run("echo $A-$B", envs={"A": "1", "B": "two"}).stdout == "1-two\n"
    assert sbx.commands.run("pwd", cwd="/tmp").stdout == "/tmp\n"
    assert sbx.commands.run("tr a-z A-Z", stdin="shout\n").stdout == "SHOUT\n"


def test_run_timeout_kills_the_command(sbx):
    started = time.monotonic()
    r = sbx.commands.run("sleep 30", timeout=1)
    assert time.monotonic() - started < 10
    assert (r.exit_code, r.timed_out) == (124, True)


def test_out_of_memory_kills_only_the_command(sbx):
    r = sbx.commands.run("dd if=/dev/zero of=/dev/null bs=700M count=1")
    assert (r.exit_code, r.oom_killed) == (137, True)
    assert sbx.commands.run("echo alive").stdout == "alive\n"


def test_missing_executable_is_127(sbx):
    assert sbx.commands.run("no-such-program-xyz").exit_code == 127


def test_streamed_run_delivers_output_as_it_comes(sbx):
    events = []
    lock = threading.Lock()

    def record(stream):
        def cb(text):
            with lock:
                events.append((stream, text, time.monotonic()))
        return cb

    r = sbx.commands.run("echo one; sleep 0.6; echo two >&2; sleep 0.6; printf 'thr\\xc3\\xa9e\\n'",
                         on_stdout=record("out"), on_stderr=record("err"))
    done = time.monotonic()
    assert r.exit_code == 0
    assert (r.stdout, r.stderr) == ("one\nthrée\n", "two\n")
    assert [(s, t) for s, t, _ in events] == [("out", "one\n"), ("err", "two\n"), ("out", "thrée\n")]
    assert done - events[0][2] > 1.0  # "one" arrived long before the command ended


def test_streamed_run_reports_exit_code_and_timeout(sbx):
    out = []
    r = sbx.commands.run("echo begin; sleep 30", timeout=1, on_stdout=out.append)
    assert (r.exit_code, r.timed_out, out) == (124, True, ["begin\n"])
    r = sbx.commands.run("exit 7", on_stderr=out.append)
    assert r.exit_code == 7


def test_background_process_with_stdin(sbx):
    h = sbx.commands.run("read a; echo got:$a; read b; echo got:$b >&2; exit 5", background=True)
    assert isinstance(h, CommandHandle) and h.pid > 0
    procs = {p.pid: p for p in sbx.commands.list()}
    assert procs[h.pid].running is True and procs[h.pid].exit_code is None
    h.send_stdin("first\n")
    sbx.commands.send_stdin(h.pid, b"second\n")
    r = h.wait(timeout=20)
    assert (r.exit_code, r.stdout, r.stderr) == (5, "got:first\n", "got:second\n")
    assert h.exit_code == 5
    finished = poll(lambda: [p for p in sbx.commands.list() if p.pid == h.pid and not p.running],
                    what="process listed as finished")
    assert finished[0].exit_code == 5


def test_background_close_stdin_and_callbacks(sbx):
    chunks = []
    h = sbx.commands.run("cat; echo done", background=True, on_stdout=chunks.append)
    h.send_stdin("abc\n")
    poll(lambda: "abc\n" in "".join(chunks), what="echo of stdin")  # output streams before exit
    h.close_stdin()
    r = h.wait(timeout=20)
    assert r.exit_code == 0 and r.stdout == "abc\ndone\n" and "".join(chunks) == "abc\ndone\n"


def test_connect_replays_output_and_kill(sbx):
    h = sbx.commands.run("echo early; sleep 60", background=True)
    other = sbx.commands.connect(h.pid)
    with pytest.raises(OpenSandboxTimeoutError):
        other.wait(timeout=0.5)  # still sleeping; the wait goes on in the background
    poll(lambda: other.stdout == "early\n", what="replay of earlier output")
    assert other.exit_code is None
    assert other.kill() is True
    r = other.wait(timeout=20)
    assert r.exit_code != 0 and r.stdout == "early\n"
    assert h.wait(timeout=20).exit_code == r.exit_code


def test_connect_unknown_pid_is_not_found(sbx):
    with pytest.raises(NotFoundError) as e:
        sbx.commands.connect(999999)
    assert e.value.code == "process_not_found"
    assert sbx.commands.kill(999999) is False


def test_signal_and_process_listing(sbx):
    h = sbx.commands.run("trap 'echo got-term; exit 9' TERM; echo ready; while true; do sleep 0.1; done",
                         background=True, cwd="/tmp", tag="looper", on_stdout=lambda _: None)
    poll(lambda: h.stdout == "ready\n", what="trap installed")
    info = {p.pid: p for p in sbx.commands.list()}[h.pid]
    assert (info.tag, info.cwd, info.running) == ("looper", "/tmp", True)
    assert "trap" in info.cmd and info.started_at is not None
    h.signal("SIGTERM")
    r = h.wait(timeout=20)
    assert (r.exit_code, r.stdout) == (9, "ready\ngot-term\n")


def test_disconnect_leaves_the_process_running(sbx):
    h = sbx.commands.run("echo hi; sleep 60", background=True, on_stdout=lambda _: None)
    poll(lambda: h.stdout == "hi\n", what="output")
    h.disconnect()
    assert {p.pid: p for p in sbx.commands.list()}[h.pid].running
    assert sbx.commands.kill(h.pid) is True
