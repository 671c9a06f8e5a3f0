"""A small local STUB of the control plane and of a worker's data path, used
only to unit-test the SDK's routing and token refresh (connectURL + token),
which the combined server does not exercise. It is not OpenSandbox: it knows
just enough routes to answer the SDK, records every request, and issues
tokens that it can expire on demand."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple

API_KEY = "stub-key"
SANDBOX_ID = "stubsbx1"


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


class StubControlPlane:
    """Control plane on ``/``; worker data path on ``/worker``."""

    def __init__(self, token_lifetime: float = 600.0) -> None:
        self.token_lifetime = token_lifetime
        self.requests: List[Dict[str, Any]] = []
        self.valid_tokens: Dict[str, float] = {}
        self.issued = 0
        # Answer for DELETE /sandboxes/<id> instead of 204, as (status, body).
        self.delete_answer: Optional[Tuple[int, Dict[str, Any]]] = None
        # Cleared by stall_tokens(): token requests then wait until it is set
        # again; token_asked is set when one arrives.
        self.tokens_flow = threading.Event()
        self.tokens_flow.set()
        self.token_asked = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self) -> "StubControlPlane":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def issue(self) -> Dict[str, Any]:
        with self._lock:
            self.issued += 1
            token = f"tok-{self.issued}"
            expires = time.time() + self.token_lifetime
            self.valid_tokens[token] = expires
        return {"token": token, "tokenExpiresAt": _rfc3339(expires), "connectURL": self.url + "/worker"}

    def stall_tokens(self) -> None:
        """Holds token requests until ``tokens_flow.set()``."""
        self.token_asked.clear()
        self.tokens_flow.clear()

    def count(self, method: str, path: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if (r["method"], r["path"]) == (method, path))

    def expire_all(self) -> None:
        """Makes every issued token rejected as expired (server side)."""
        with self._lock:
            self.valid_tokens.clear()

    def sandbox(self, with_token: bool = True) -> Dict[str, Any]:
        now = time.time()
        d: Dict[str, Any] = {"sandboxID": SANDBOX_ID, "templateID": "busybox", "status": "running",
                             "startedAt": _rfc3339(now), "endAt": _rfc3339(now + 300),
                             "cpuCount": 1, "memoryMB": 512, "networkEnabled": False}
        if with_token:
            d.update(self.issue())
        else:
            d["connectURL"] = self.url + "/worker"
        return d

    def paths(self) -> List[Tuple[str, str]]:
        return [(r["method"], r["path"]) for r in self.requests]

    def _handler(self) -> type:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Optional[Any] = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                with stub._lock:
                    stub.requests.append({"method": method, "path": path, "headers": dict(self.headers), "body": raw})
                if path.startswith("/worker/"):
                    return self._data(method, path[len("/worker"):], raw)
                if self.headers.get("X-API-Key") != API_KEY:
                    return self._send(401 if not self.headers.get("X-API-Key") else 403,
                                      {"error": "bad key", "code": "forbidden"})
                if path == "/sandboxes" and method == "POST":
                    return self._send(201, stub.sandbox())
                if path == "/sandboxes/limited" and method == "GET":
                    return self._send(429, {"error": "sandbox quota of 20 reached", "code": "quota_exceeded"})
                if path == f"/sandboxes/{SANDBOX_ID}" and method == "GET":
                    return self._send(200, stub.sandbox(with_token=False))
                if path == f"/sandboxes/{SANDBOX_ID}" and method == "DELETE":
                    return self._send(*(stub.delete_answer or (204,)))
                if path == f"/sandboxes/{SANDBOX_ID}/timeout" and method == "POST":
                    return self._send(204)
                if path == f"/sandboxes/{SANDBOX_ID}/token" and method == "POST":
                    stub.token_asked.set()
                    stub.tokens_flow.wait(10)
                    return self._send(200, stub.issue())
                return self._send(404, {"error": "not found", "code": "sandbox_not_found"})

            def _data(self, method: str, path: str, raw: bytes) -> None:
                auth = self.headers.get("Authorization", "")
                token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
                if not token:
                    return self._send(401, {"error": "missing token", "code": "unauthenticated"})
                with stub._lock:
                    exp = stub.valid_tokens.get(token)
                if exp is None or exp < time.time():
                    return self._send(401, {"error": "token expired", "code": "token_expired"})
                if path == f"/sandboxes/{SANDBOX_ID}/commands" and method == "POST":
                    cmd = json.loads(raw)["cmd"]
                    return self._send(200, {"exitCode": 0, "stdout": f"ran {cmd} with {token}\n",
                                            "stderr": "", "durationMs": 1})
                return self._send(404, {"error": "no such route", "code": "file_not_found"})

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_DELETE(self) -> None:
                self._route("DELETE")

        return Handler

