"""Fixtures for the suite. It runs against a real OpenSandbox server with real
sandboxes: `scripts/with-server.sh make -C sdks/python test` starts one and sets
OPENSANDBOX_API_URL / OPENSANDBOX_API_KEY. Every sandbox a test creates is
killed by the test (the wrapper fails the run on leftovers)."""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, Iterator, TypeVar

import httpx
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from opensandbox import Sandbox  # noqa: E402

T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    url = os.environ.get("OPENSANDBOX_API_URL", "http://localhost:8080")
    try:
        httpx.get(url + "/health", timeout=5).raise_for_status()
    except httpx.HTTPError as e:
        raise pytest.UsageError(
            f"no OpenSandbox server at {url} ({e}); run the suite through "
            "scripts/with-server.sh, or set OPENSANDBOX_API_URL and OPENSANDBOX_API_KEY")


def poll(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> T:
    """Calls ``check`` until it returns something truthy; fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(interval)


@pytest.fixture(scope="session")
def sbx() -> Iterator[Sandbox]:
    """One busybox sandbox shared by the tests that only need a place to run."""
    with Sandbox.create(template="busybox", timeout=900) as s:
        yield s


@pytest.fixture(scope="session")
def base_sbx() -> Iterator[Sandbox]:
    """A sandbox of the base template (bash, coreutils) for terminal tests."""
    with Sandbox.create(template="base", timeout=900) as s:
        yield s


@pytest.fixture
def fresh_sbx() -> Iterator[Sandbox]:
    """A busybox sandbox of the test's own (for tests that kill or break it)."""
    with Sandbox.create(template="busybox", timeout=300) as s:
        yield s
