"""Pure wire-level pieces: SSE decoding, output collection, error mapping,
times. No server involved."""

from __future__ import annotations

import base64
from datetime import datetime, timezone

import pytest

from opensandbox import (
    AuthenticationError,
    InvalidArgumentError,
    NotFoundError,
    OpenSandboxError,
    PermissionDeniedError,
    RateLimitError,
    SandboxGoneError,
    UnavailableError,
)
from opensandbox._wire import OutputCollector, SSEDecoder, process_body, run_read_timeout, sandbox_body, whole_seconds
from opensandbox.exceptions import error_from_answer
from opensandbox.models import parse_time


def test_sse_decoder_skips_comments_and_event_lines():
    stream = (b': keepalive\n\nevent: start\r\ndata: {"type":"start","pid":42}\r\n\r\n'
              b'event: exit\ndata:{"type":"exit",\ndata: "exitCode":0}\n\n')
    whole = SSEDecoder().feed(stream)
    assert whole == [{"type": "start", "pid": 42}, {"type": "exit", "exitCode": 0}]
    for size in (1, 2, 7):  # the same bytes in small pieces, lines split anywhere
        d = SSEDecoder()
        assert [e for i in range(0, len(stream), size) for e in d.feed(stream[i:i + size])] == whole


def test_collector_joins_utf8_split_across_events_and_runs_callbacks():
    seen = []
    c = OutputCollector(on_stdout=seen.append)
    word = "é€".encode()  # 2 + 3 bytes
    pending = []
    for part in (word[:1], word[1:3], word[3:]):
        pending += c.handle({"type": "stdout", "data": base64.b64encode(part).decode()})
    for cb, text in pending:
        cb(text)
    c.handle({"type": "stderr", "data": base64.b64encode(b"oops").decode()})
    assert c.handle({"type": "exit", "exitCode": 3, "timedOut": True}) == []
    r = c.result()
    assert (seen, r.stdout, r.stderr, r.exit_code, r.timed_out) == (["é", "€"], "é€", "oops", 3, True)


def test_collector_error_event_raises_typed_error():
    with pytest.raises(SandboxGoneError) as e:
        OutputCollector().handle({"type": "error", "error": "sandbox went away", "code": "sandbox_not_found"})
    assert e.value.status is None and e.value.message == "sandbox went away"
    with pytest.raises(OpenSandboxError) as e:
        OutputCollector().handle({"type": "error", "error": "agent died", "code": "agent_unreachable"})
    assert isinstance(e.value, UnavailableError)


@pytest.mark.parametrize("status,body,cls,code", [
    (400, b'{"error":"bad","code":"invalid_argument"}', InvalidArgumentError, "invalid_argument"),
    (401, b'{"error":"no key","code":"unauthenticated"}', AuthenticationError, "unauthenticated"),
    (401, b'{"error":"old","code":"token_expired"}', AuthenticationError, "token_expired"),
    (403, b'{"error":"denied","code":"permission_denied"}', PermissionDeniedError, "permission_denied"),
    (404, b'{"error":"gone","code":"file_not_found"}', NotFoundError, "file_not_found"),
    (413, b'{"error":"big","code":"body_too_large"}', InvalidArgumentError, "body_too_large"),
    (429, b'{"error":"slow down"}', RateLimitError, None),
    (503, b'{"error":"full","code":"worker_full"}', UnavailableError, "worker_full"),
    (502, b"<html>bad gateway</html>", OpenSandboxError, None),
])
def test_error_mapping(status, body, cls, code):
    err = error_from_answer(status, body, request_id="r1")
    assert type(err) is cls
    assert (err.status, err.code, err.request_id) == (status, code, "r1")
    assert err.message


def test_times_with_nanoseconds_offsets_and_zero():
    assert parse_time("2026-11-28T12:50:00.123456789Z") == datetime(2026, 11, 28, 12, 50, 0, 123456, timezone.utc)
    assert parse_time("2026-11-28T14:50:00+02:00") == datetime(2026, 11, 28, 12, 50, tzinfo=timezone.utc)
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert parse_time(None) is None


def test_request_bodies():
    assert process_body("ls", ["-l"], None, "/", None, None) == {"cmd": "ls", "args": ["-l"], "cwd": "/"}
    assert process_body("x", None, {"A": "1"}, None, 5, "in", background=True) == \
        {"cmd": "x", "envs": {"A": "1"}, "timeout": 5, "stdin": "in", "background": True}
    with pytest.raises(TypeError):
        process_body("ls", "-l", None, None, None, None)
    # The server counts timeouts in whole seconds: fractions are rounded up.
    assert process_body("x", None, None, None, 2.1, None, background=True)["timeout"] == 3
    assert process_body("x", None, None, None, 0.4, None)["timeout"] == 1
    assert sandbox_body("base", 1.5, None, None, None, None, False, None, None)["timeout"] == 2
    assert "strictRegion" not in sandbox_body("base", None, None, None, None, None, False, "eu", None)
    strict = sandbox_body("base", None, None, None, None, None, False, "eu", None, strict_region=True)
    assert strict["region"] == "eu" and strict["strictRegion"] is True
    assert [whole_seconds(s) for s in (None, 0, 0.001, 0.4, 1, 1.0, 1.5, 59.99, -1)] == \
        [None, 0, 1, 1, 1, 1, 2, 60, -1]
    assert all(type(whole_seconds(s)) is int for s in (0.4, 2.0, 0))
    assert run_read_timeout(None, 60) == 120 and run_read_timeout(10, 5) == 15
