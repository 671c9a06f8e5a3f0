"""Every error type, raised by the real server (the 429 case, which the
combined server has no path to, is in test_routing_stub.py)."""

from __future__ import annotations

import os

import pytest

from opensandbox import (
    AuthenticationError,
    InvalidArgumentError,
    NetworkError,
    NotFoundError,
    OpenSandboxError,
    OpenSandboxTimeoutError,
    Sandbox,
    SandboxGoneError,
)


def test_unknown_sandbox_is_not_found():
    with pytest.raises(NotFoundError) as e:
        Sandbox.connect("no-such-sandbox")
    assert (e.value.status, e.value.code) == (404, "sandbox_not_found")
    assert isinstance(e.value, OpenSandboxError)


def test_wrong_or_missing_api_key_is_authentication_error():
    with pytest.raises(AuthenticationError) as e:
        Sandbox.list(api_key="wrong-key")
    assert e.value.status == 403
    if os.environ.get("OPENSANDBOX_API_KEY"):
        with pytest.raises(AuthenticationError) as e:
            Sandbox.create(template="busybox", api_key="")
        assert e.value.status == 401


def test_invalid_arguments():
    with pytest.raises(InvalidArgumentError) as e:
        Sandbox.create(template="no-such-template")
    assert (e.value.status, e.value.code) == (400, "template_not_found")
    with pytest.raises(InvalidArgumentError) as e:
        Sandbox.create(template="busybox", cpu_count=999)
    assert e.value.code == "invalid_argument" and "cpuCount" in e.value.message


def test_wait_past_its_deadline_is_timeout_error(sbx):
    h = sbx.commands.run("sleep 60", background=True)
    try:
        with pytest.raises(OpenSandboxTimeoutError) as e:
            h.wait(timeout=0.3)
        assert isinstance(e.value, TimeoutError)  # also the built-in
    finally:
        h.kill()


def test_request_past_its_timeout_is_timeout_error(fresh_sbx):
    # Reading a FIFO with no writer makes the server wait, so the request's own timeout fires.
    assert fresh_sbx.commands.run("mkfifo /tmp/fifo").exit_code == 0
    slow = Sandbox.connect(fresh_sbx.sandbox_id, request_timeout=0.5)
    try:
        with pytest.raises(OpenSandboxTimeoutError) as e:
            slow.files.read("/tmp/fifo")
        assert e.value.code == "timeout"
    finally:
        slow.close()
    assert fresh_sbx.commands.run("echo unblock > /tmp/fifo", timeout=5).exit_code == 0


def test_killed_sandbox_is_gone(fresh_sbx):
    fresh_sbx.kill()
    with pytest.raises(SandboxGoneError) as e:
        fresh_sbx.commands.run("true")
    assert (e.value.status, e.value.code) == (404, "sandbox_not_found")
    with pytest.raises(SandboxGoneError):
        fresh_sbx.files.read("/etc/hostname")
    with pytest.raises(SandboxGoneError):
        fresh_sbx.set_timeout(60)
    assert fresh_sbx.is_running() is False


def test_unreachable_server_is_network_error():
    with pytest.raises(NetworkError):
        Sandbox.list(api_url="http://127.0.0.1:9")
