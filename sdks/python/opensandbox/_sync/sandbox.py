"""The blocking :class:`Sandbox`."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from .._wire import ConnectionConfig, DataRoute, sandbox_body, whole_seconds
from ..exceptions import NotFoundError, SandboxGoneError
from ..models import SandboxInfo
from .commands import Commands
from .filesystem import Filesystem
from .pty import Pty
from .transport import SyncTransport


class Sandbox:
    """An isolated Linux sandbox.

    Make one with :meth:`create` or :meth:`connect`; use it as a context
    manager to kill it on exit::

        with Sandbox.create(template="base") as sbx:
            print(sbx.commands.run("echo hi").stdout)

    ``sbx.commands``, ``sbx.files`` and ``sbx.pty`` reach inside it.
    Connection settings come from the arguments or from
    ``OPENSANDBOX_API_URL`` / ``OPENSANDBOX_API_KEY``.
    """

    def __init__(self, info: SandboxInfo, transport: SyncTransport) -> None:
        """Internal: use :meth:`create` or :meth:`connect`."""
        self._info = info
        self._t = transport
        self.commands = Commands(transport)
        """Run commands and manage processes."""
        self.files = Filesystem(transport)
        """Read, write and watch files."""
        self.pty = Pty(transport)
        """Interactive terminals."""

    @property
    def sandbox_id(self) -> str:
        """The sandbox's id."""
        return self._info.sandbox_id

    @property
    def connection_config(self) -> ConnectionConfig:
        return self._t.config

    def __repr__(self) -> str:
        return f"Sandbox(sandbox_id={self.sandbox_id!r}, template={self._info.template_id!r})"

    @classmethod
    def _open(cls, config: ConnectionConfig, answer: Dict[str, Any]) -> "Sandbox":
        info = SandboxInfo.from_json(answer)
        transport = SyncTransport(config, info.sandbox_id, DataRoute.from_json(answer))
        return cls(info, transport)

    @classmethod
    def _call(cls, config: ConnectionConfig, method: str, path: str, **kw: Any) -> Any:
        api = SyncTransport(config)
        try:
            return api.lifecycle(method, path, sandbox_scoped=False, **kw).json()
        finally:
            api.close()

    @classmethod
    def create(
        cls,
        template: Optional[str] = "base",
        timeout: Optional[float] = None,
        envs: Optional[Dict[str, str]] = None,
        metadata: Optional[Dict[str, str]] = None,
        cpu_count: Optional[int] = None,
        memory_mb: Optional[int] = None,
        network_enabled: bool = False,
        region: Optional[str] = None,
        *,
        alias: Optional[str] = None,
        disk_mb: Optional[int] = None,
        strict_region: bool = False,
        api_url: Optional[str] = None,
        api_key: Optional[str] = None,
        request_timeout: Optional[float] = None,
    ) -> "Sandbox":
        """Creates a sandbox and returns once it is ready for commands.

        Args:
            template: template name (``"base"``, ``"busybox"``) or an image reference.
            timeout: lifetime in seconds, rounded up to whole ones (server default 300);
                see :meth:`set_timeout`.
            envs: environment variables of every command.
            metadata: free-form string labels, returned by :meth:`list`.
            cpu_count: CPUs (server default 1).
            memory_mb: memory limit in MiB (server default 512).
            network_enabled: give the sandbox network access (off by default).
            region: where to place it, when the deployment has regions; when that
                region has no capacity the control plane falls back to the next one
                (``sandbox.region`` says where it went).
            strict_region: stay in ``region``: without capacity there the create
                fails (``no_capacity``) instead of falling back.
            alias: a name for the sandbox.
            disk_mb: limit of the sandbox's root file system in MiB (server default
                10240); writing past it fails with ENOSPC inside the sandbox.
            api_url, api_key: override ``OPENSANDBOX_API_URL`` / ``OPENSANDBOX_API_KEY``.
            request_timeout: seconds an ordinary request may take (default 60).
        """
        config = ConnectionConfig.resolve(api_url, api_key, request_timeout)
        body = sandbox_body(template, timeout, envs, metadata, cpu_count, memory_mb, network_enabled, region, alias,
                            disk_mb, strict_region=strict_region)
        return cls._open(config, cls._call(config, "POST", "/sandboxes", json=body))

    @classmethod
    def connect(cls, sandbox_id: str, *, api_url: Optional[str] = None, api_key: Optional[str] = None,
                request_timeout: Optional[float] = None) -> "Sandbox":
        """Connects to an existing sandbox by id; raises :class:`NotFoundError`
        when there is no such sandbox."""
        config = ConnectionConfig.resolve(api_url, api_key, request_timeout)
        return cls._open(config, cls._call(config, "GET", f"/sandboxes/{sandbox_id}"))

    @classmethod
    def list(cls, *, api_url: Optional[str] = None, api_key: Optional[str] = None,
             request_timeout: Optional[float] = None) -> List[SandboxInfo]:
        """The running sandboxes visible with this API key."""
        config = ConnectionConfig.resolve(api_url, api_key, request_timeout)
        return [SandboxInfo.from_json(d) for d in cls._call(config, "GET", "/sandboxes")]

    def get_info(self) -> SandboxInfo:
        """Current information about this sandbox; raises
        :class:`SandboxGoneError` once it was killed or timed out."""
        self._info = SandboxInfo.from_json(self._t.lifecycle("GET", f"/sandboxes/{self.sandbox_id}").json())
        return self._info

    def is_running(self) -> bool:
        """True while the sandbox exists and runs."""
        try:
            return self.get_info().status == "running"
        except NotFoundError:
            return False

    def set_timeout(self, seconds: float) -> None:
        """Makes the sandbox end ``seconds`` from now (longer or shorter),
        rounded up to whole seconds: the server counts whole ones."""
        self._t.lifecycle("POST", f"/sandboxes/{self.sandbox_id}/timeout", json={"timeout": whole_seconds(seconds)})

    def kill(self) -> bool:
        """Destroys the sandbox. Returns False when it was already gone (the
        server answers that it does not exist); other failures raise."""
        try:
            self._t.lifecycle("DELETE", f"/sandboxes/{self.sandbox_id}")
        except SandboxGoneError:  # 404 sandbox_not_found or 410; other failures raise
            return False
        return True

    def close(self) -> None:
        """Releases this object's connections; the sandbox keeps running."""
        self._t.close()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.kill()
        finally:
            self.close()
