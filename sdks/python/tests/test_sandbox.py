"""Sandbox lifecycle against the real server."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from conftest import poll
from opensandbox import NotFoundError, Sandbox, SandboxGoneError, SandboxInfo


def test_create_with_options_info_list_and_kill():
    sbx = Sandbox.create(template="busybox", timeout=119.2, envs={"GREETING": "hello there"},
                         metadata={"suite": "python-sdk"}, cpu_count=1, memory_mb=256, network_enabled=True,
                         alias="py-sdk-test", disk_mb=128)
    try:
        info = sbx.get_info()
        assert info.sandbox_id == sbx.sandbox_id
        assert (info.template_id, info.status) == ("busybox", "running")
        assert info.metadata == {"suite": "python-sdk"}
        assert (info.cpu_count, info.memory_mb, info.network_enabled) == (1, 256, True)
        assert info.alias == "py-sdk-test"
        assert info.disk_mb == 128
        size_kib = int(sbx.commands.run("df -k / | tail -1").stdout.split()[1])
        assert 96 << 10 < size_kib <= 128 << 10  # the limit is the root file system's size
        assert info.started_at is not None and info.end_at is not None
        lifetime = (info.end_at - info.started_at).total_seconds()
        assert 115 <= lifetime <= 125
        assert sbx.commands.run("echo $GREETING").stdout == "hello there\n"
        assert sbx.is_running() is True

        listed = {s.sandbox_id: s for s in Sandbox.list()}
        assert isinstance(listed[sbx.sandbox_id], SandboxInfo)
        assert listed[sbx.sandbox_id].metadata == {"suite": "python-sdk"}
    finally:
        assert sbx.kill() is True
    assert sbx.is_running() is False
    assert sbx.kill() is False  # already gone
    assert sbx.sandbox_id not in {s.sandbox_id for s in Sandbox.list()}
    with pytest.raises(SandboxGoneError):
        sbx.get_info()
    sbx.close()


def test_set_timeout_moves_the_end(sbx):
    sbx.set_timeout(60)
    end = sbx.get_info().end_at
    expected = datetime.now(timezone.utc) + timedelta(seconds=60)
    assert abs((end - expected).total_seconds()) < 10
    sbx.set_timeout(900)
    assert sbx.get_info().end_at > end + timedelta(seconds=800)


def test_fractional_timeout_is_rounded_up():
    sbx = Sandbox.create(template="busybox")
    try:
        sbx.set_timeout(0.4)  # sent as 1 s, not truncated to an invalid 0
        poll(lambda: not sbx.is_running(), timeout=15, what="the timeout to end the sandbox")
    finally:
        killed = sbx.kill()
        sbx.close()
    assert killed is False


def test_context_manager_kills_on_exit():
    with Sandbox.create(template="busybox") as sbx:
        sid = sbx.sandbox_id
        assert sbx.commands.run("true").exit_code == 0
    with pytest.raises(NotFoundError) as e:
        Sandbox.connect(sid)
    assert e.value.code == "sandbox_not_found"
    assert not isinstance(e.value, SandboxGoneError)  # connect by id: plain not-found


def test_context_manager_kills_when_the_block_raises():
    with pytest.raises(RuntimeError):
        with Sandbox.create(template="busybox") as sbx:
            sid = sbx.sandbox_id
            raise RuntimeError("boom")
    assert sid not in {s.sandbox_id for s in Sandbox.list()}


def test_connect_reaches_the_same_sandbox(sbx):
    sbx.files.write("/tmp/connect-marker", "from the first handle")
    other = Sandbox.connect(sbx.sandbox_id)
    try:
        assert other.sandbox_id == sbx.sandbox_id
        assert other.get_info().template_id == "busybox"
        assert other.commands.run("cat /tmp/connect-marker").stdout == "from the first handle"
    finally:
        other.close()  # not kill: the session fixture owns the sandbox
    assert sbx.is_running()
