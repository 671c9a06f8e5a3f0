"""Routing and token refresh against the local STUB control plane
(tests/stub_control_plane.py): connectURL + token data path, API key on
lifecycle calls, refresh before tokenExpiresAt, retry after token_expired,
and the 429 mapping, none of which the combined server exercises."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from conftest import poll
from opensandbox import AsyncSandbox, NotFoundError, OpenSandboxError, RateLimitError, Sandbox, _wire
from stub_control_plane import API_KEY, SANDBOX_ID, StubControlPlane

TOKEN_PATH = f"/sandboxes/{SANDBOX_ID}/token"
COMMANDS_PATH = f"/worker/sandboxes/{SANDBOX_ID}/commands"


@pytest.fixture
def stub():
    with StubControlPlane(token_lifetime=100.0) as s:
        yield s


@pytest.fixture
def fake_clock(monkeypatch):
    """Replaces the SDK's wall clock; returns a function that moves it on."""
    now = [_wire.clock()]
    monkeypatch.setattr(_wire, "clock", lambda: now[0])

    def advance(seconds: float) -> None:
        now[0] += seconds

    return advance


def _data_requests(stub):
    return [r for r in stub.requests if r["path"].startswith("/worker/")]


def test_data_path_uses_connect_url_and_token(stub):
    sbx = Sandbox.create(template="busybox", api_url=stub.url, api_key=API_KEY)
    assert sbx.commands.run("echo hi").stdout == "ran echo hi with tok-1\n"
    assert sbx.kill() is True
    create, run, kill = stub.requests
    assert (create["method"], create["path"]) == ("POST", "/sandboxes")
    assert create["headers"]["X-API-Key"] == API_KEY
    assert run["path"] == f"/worker/sandboxes/{SANDBOX_ID}/commands"
    assert run["headers"]["Authorization"] == "Bearer tok-1"
    assert "X-API-Key" not in run["headers"]
    assert (kill["method"], kill["path"]) == ("DELETE", f"/sandboxes/{SANDBOX_ID}")
    assert kill["headers"]["X-API-Key"] == API_KEY
    assert "Authorization" not in kill["headers"]
    url, headers = sbx._t.ws_target(f"/sandboxes/{SANDBOX_ID}/pty/s1")
    assert url == stub.url.replace("http://", "ws://") + f"/worker/sandboxes/{SANDBOX_ID}/pty/s1"
    assert headers == {"Authorization": "Bearer tok-1"}
    sbx.close()


def test_token_refreshed_before_it_expires(stub, fake_clock):
    sbx = Sandbox.create(template="busybox", api_url=stub.url, api_key=API_KEY)
    sbx.commands.run("one")
    fake_clock(70)  # 30 s of 100 left: more than the 20 s margin, no refresh yet
    sbx.commands.run("two")
    assert stub.issued == 1
    fake_clock(15)  # 15 s left: refresh first
    assert sbx.commands.run("three").stdout == "ran three with tok-2\n"
    assert stub.paths()[-2:] == [("POST", f"/sandboxes/{SANDBOX_ID}/token"),
                                 ("POST", f"/worker/sandboxes/{SANDBOX_ID}/commands")]
    assert stub.requests[-2]["headers"]["X-API-Key"] == API_KEY
    assert [r["headers"]["Authorization"] for r in _data_requests(stub)] == \
        ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]
    sbx.kill()
    sbx.close()


def test_rejected_expired_token_is_refreshed_and_retried(stub):
    sbx = Sandbox.create(template="busybox", api_url=stub.url, api_key=API_KEY)
    stub.expire_all()  # e.g. the clocks disagree: the worker refuses tok-1
    assert sbx.commands.run("again").stdout == "ran again with tok-2\n"
    assert stub.paths()[1:] == [("POST", f"/worker/sandboxes/{SANDBOX_ID}/commands"),
                                ("POST", f"/sandboxes/{SANDBOX_ID}/token"),
                                ("POST", f"/worker/sandboxes/{SANDBOX_ID}/commands")]
    sbx.kill()
    sbx.close()


def test_connect_without_token_fetches_one(stub):
    sbx = Sandbox.connect(SANDBOX_ID, api_url=stub.url, api_key=API_KEY)
    assert sbx.commands.run("x").stdout == "ran x with tok-1\n"
    assert stub.paths() == [("GET", f"/sandboxes/{SANDBOX_ID}"), ("POST", f"/sandboxes/{SANDBOX_ID}/token"),
                            ("POST", f"/worker/sandboxes/{SANDBOX_ID}/commands")]
    sbx.close()


def test_async_token_refresh(stub, fake_clock):
    async def main() -> None:
        async with await AsyncSandbox.create(template="busybox", api_url=stub.url, api_key=API_KEY) as sbx:
            assert (await sbx.commands.run("a")).stdout == "ran a with tok-1\n"
            fake_clock(85)
            assert (await sbx.commands.run("b")).stdout == "ran b with tok-2\n"
            stub.expire_all()
            assert (await sbx.commands.run("c")).stdout == "ran c with tok-3\n"

    asyncio.run(main())
    assert stub.paths()[-1] == ("DELETE", f"/sandboxes/{SANDBOX_ID}")


def test_quota_answer_is_rate_limit_error(stub):
    with pytest.raises(RateLimitError) as e:
        Sandbox.connect("limited", api_url=stub.url, api_key=API_KEY)
    assert e.value.status == 429
    assert e.value.code == "quota_exceeded"
    assert "quota" in e.value.message


def test_kill_answers_false_only_when_the_sandbox_is_gone(stub):
    sbx = Sandbox.create(template="busybox", api_url=stub.url, api_key=API_KEY)
    assert sbx.kill() is True
    for status, code in ((404, "sandbox_not_found"), (410, "gone")):
        stub.delete_answer = (status, {"error": "no such sandbox", "code": code})
        assert sbx.kill() is False, (status, code)
    # A 404 that does not name the sandbox (a wrong API URL) and a 500 raise.
    stub.delete_answer = (404, {"error": "no such route", "code": "not_found"})
    with pytest.raises(NotFoundError) as e:
        sbx.kill()
    assert e.value.code == "not_found"
    stub.delete_answer = (500, {"error": "database down", "code": "internal"})
    with pytest.raises(OpenSandboxError) as e:
        sbx.kill()
    assert e.value.status == 500
    sbx.close()

    async def main() -> None:
        asbx = await AsyncSandbox.connect(SANDBOX_ID, api_url=stub.url, api_key=API_KEY)
        with pytest.raises(OpenSandboxError):
            await asbx.kill()
        stub.delete_answer = (404, {"error": "no such sandbox", "code": "sandbox_not_found"})
        assert await asbx.kill() is False
        stub.delete_answer = None
        assert await asbx.kill() is True
        await asbx.close()

    asyncio.run(main())


def test_timeouts_are_sent_as_whole_seconds_rounded_up(stub):
    sbx = Sandbox.create(template="busybox", timeout=1.5, api_url=stub.url, api_key=API_KEY)
    sbx.set_timeout(0.4)
    sbx.set_timeout(30)
    sbx.commands.run("x", timeout=0.4)
    sbx.commands.run("x")

    async def main() -> None:
        async with await AsyncSandbox.connect(SANDBOX_ID, api_url=stub.url, api_key=API_KEY) as asbx:
            await asbx.set_timeout(2.1)
            await asbx.commands.run("x", timeout=59.5)

    asyncio.run(main())
    sent = [(r["path"], json.loads(r["body"]).get("timeout")) for r in stub.requests
            if r["method"] == "POST" and r["body"] and r["path"] != TOKEN_PATH]
    timeout = f"/sandboxes/{SANDBOX_ID}/timeout"
    assert sent == [("/sandboxes", 2), (timeout, 1), (timeout, 30), (COMMANDS_PATH, 1), (COMMANDS_PATH, None),
                    (timeout, 3), (COMMANDS_PATH, 60)]
    sbx.close()


def _in_thread(fn):
    """Runs fn in a thread; returns the thread and a list that gets its result or exception."""
    out = []

    def run() -> None:
        try:
            out.append(fn())
        except Exception as e:  # handed to the test
            out.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def _joined(t: threading.Thread, out: list):
    t.join(10)
    assert not t.is_alive(), "the call did not finish"
    if isinstance(out[0], Exception):
        raise out[0]
    return out[0]


def test_concurrent_expired_answers_refresh_the_token_once(stub):
    sbx = Sandbox.create(template="busybox", api_url=stub.url, api_key=API_KEY)
    sbx.commands.run("warm")
    stub.stall_tokens()
    stub.expire_all()
    calls = [_in_thread(lambda: sbx.commands.run("x").stdout) for _ in range(5)]
    assert stub.token_asked.wait(5)
    poll(lambda: stub.count("POST", COMMANDS_PATH) >= 1 + 5, what="every call refused with tok-1")
    stub.tokens_flow.set()
    assert [_joined(t, out) for t, out in calls] == ["ran x with tok-2\n"] * 5
    assert stub.count("POST", TOKEN_PATH) == 1
    sbx.close()


def test_call_needing_no_new_token_does_not_wait_for_a_refresh(stub):
    sbx = Sandbox.create(template="busybox", api_url=stub.url, api_key=API_KEY)
    sbx.commands.run("warm")
    stub.stall_tokens()
    stub.expire_all()
    refresher = _in_thread(lambda: sbx.commands.run("refresher").stdout)
    assert stub.token_asked.wait(5)
    with stub._lock:
        stub.valid_tokens["tok-1"] = time.time() + 100  # accepted again: the next call needs no new token
    other = _in_thread(lambda: sbx.commands.run("other").stdout)
    other[0].join(5)
    stub.tokens_flow.set()
    assert not other[0].is_alive(), "a call with a good token waited for the stalled refresh"
    assert _joined(*other) == "ran other with tok-1\n"
    assert _joined(*refresher) == "ran refresher with tok-2\n"
    sbx.close()


def test_async_concurrent_expired_answers_refresh_the_token_once(stub):
    async def main() -> None:
        async with await AsyncSandbox.create(template="busybox", api_url=stub.url, api_key=API_KEY) as sbx:
            await sbx.commands.run("warm")
            stub.expire_all()
            outs = await asyncio.gather(*(sbx.commands.run("x") for _ in range(5)))
            assert [o.stdout for o in outs] == ["ran x with tok-2\n"] * 5

    asyncio.run(main())
    assert stub.count("POST", TOKEN_PATH) == 1
