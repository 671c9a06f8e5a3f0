"""The asyncio :class:`AsyncSandbox`."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from .._wire import ConnectionConfig, DataRoute, sandbox_body, whole_seconds
from ..exceptions import NotFoundError, SandboxGoneError
from ..models import SandboxInfo
from .commands import AsyncCommands
from .filesystem import AsyncFilesystem
from .pty import AsyncPty
from .transport import AsyncTransport


class AsyncSandbox:
    """An isolated Linux sandbox, for asyncio code::

        async with await AsyncSandbox.create(template="base") as sbx:
            print((await sbx.commands.run("echo hi")).stdout)

    Same methods as :class:`Sandbox`, as coroutines.
    """

    def __init__(self, info: SandboxInfo, transport: AsyncTransport) -> None:
        """Internal: use :meth:`create` or :meth:`connect`."""
        self._info = info
        self._t = transport
        self.commands = AsyncCommands(transport)
        self.files = AsyncFilesystem(transport)
        self.pty = AsyncPty(transport)

    @property
    def sandbox_id(self) -> str:
        """The sandbox's id."""
        return self._info.sandbox_id

    @property
    def connection_config(self) -> ConnectionConfig:
        return self._t.config

    def __repr__(self) -> str:
        return f"AsyncSandbox(sandbox_id={self.sandbox_id!r}, template={self._info.template_id!r})"

    @classmethod
    def _open(cls, config: ConnectionConfig, answer: Dict[str, Any]) -> "AsyncSandbox":
        info = SandboxInfo.from_json(answer)
        return cls(info, AsyncTransport(config, info.sandbox_id, DataRoute.from_json(answer)))

    @classmethod
    async def _call(cls, config: ConnectionConfig, method: str, path: str, **kw: Any) -> Any:
        api = AsyncTransport(config)
        try:
            return (await api.lifecycle(method, path, sandbox_scoped=False, **kw)).json()
        finally:
            await api.close()

    @classmethod
    async def create(
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
    ) -> "AsyncSandbox":
        """Creates a sandbox; arguments as in ``Sandbox.create``."""
        config = ConnectionConfig.resolve(api_url, api_key, request_timeout)
        body = sandbox_body(template, timeout, envs, metadata, cpu_count, memory_mb, network_enabled, region, alias,
                            disk_mb, strict_region=strict_region)
        return cls._open(config, await cls._call(config, "POST", "/sandboxes", json=body))

    @classmethod
    async def connect(cls, sandbox_id: str, *, api_url: Optional[str] = None, api_key: Optional[str] = None,
                      request_timeout: Optional[float] = None) -> "AsyncSandbox":
        """Connects to an existing sandbox by id."""
        config = ConnectionConfig.resolve(api_url, api_key, request_timeout)
        return cls._open(config, await cls._call(config, "GET", f"/sandboxes/{sandbox_id}"))

    @classmethod
    async def list(cls, *, api_url: Optional[str] = None, api_key: Optional[str] = None,
                   request_timeout: Optional[float] = None) -> List[SandboxInfo]:
        """The running sandboxes visible with this API key."""
        config = ConnectionConfig.resolve(api_url, api_key, request_timeout)
        return [SandboxInfo.from_json(d) for d in await cls._call(config, "GET", "/sandboxes")]

    async def get_info(self) -> SandboxInfo:
        """Current information; raises SandboxGoneError once it is gone."""
        resp = await self._t.lifecycle("GET", f"/sandboxes/{self.sandbox_id}")
        self._info = SandboxInfo.from_json(resp.json())
        return self._info

    async def is_running(self) -> bool:
        """True while the sandbox exists and runs."""
        try:
            return (await self.get_info()).status == "running"
        except NotFoundError:
            return False

    async def set_timeout(self, seconds: float) -> None:
        """Makes the sandbox end ``seconds`` from now, rounded up to whole seconds."""
        await self._t.lifecycle("POST", f"/sandboxes/{self.sandbox_id}/timeout",
                                json={"timeout": whole_seconds(seconds)})

    async def kill(self) -> bool:
        """Destroys the sandbox; False when it was already gone, other failures raise."""
        try:
            await self._t.lifecycle("DELETE", f"/sandboxes/{self.sandbox_id}")
        except SandboxGoneError:  # 404 sandbox_not_found or 410; other failures raise
            return False
        return True

    async def close(self) -> None:
        """Releases this object's connections; the sandbox keeps running."""
        await self._t.close()

    async def __aenter__(self) -> "AsyncSandbox":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self.kill()
        finally:
            await self.close()
