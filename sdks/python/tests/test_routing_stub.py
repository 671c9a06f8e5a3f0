"""Routing and token refresh against the local STUB control plane
(tests/stub_control_plane.py): connectURL + token data path, API key on
lifecycle calls, refresh before tokenExpiresAt, retry after token_expired,
and the 429 mapping, none of which the combined server exercises."""

from __future__ import annotations

import asyncio

import pytest

from opensandbox import AsyncSandbox, RateLimitError, Sandbox, _wire
from stub_control_plane import API_KEY, SANDBOX_ID, StubControlPlane


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
