"""In-process tako-servers for the CLI tests: the real server app over httpx.ASGITransport (no
socket), one shared MemoryStore as the bucket, every request body recorded, and servers that can
be taken "down" (connection refused).

The project: app ``demo``, env ``production`` on the servers given, backups to resource
``backups``, credentials set through ``tako storages credentials``; config.toml names each server
with the generated key as ``key_path``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
from typer.testing import Result

from tako_backups.cli import targets
from tako_backups.errors import StorageError
from tako_backups.remote.protocol import OPERATION_PROGRESS, PUBLIC_COMMANDS, TARGET
from tako_backups.remote.signing import FileSigner
from tako_backups.server.app import create_app
from tako_backups.server.auth import RequestAuth
from tako_backups.server.cli import authorize_key
from tako_backups.server.paths import ServerPaths
from tako_backups.server.service import BackupService
from tako_backups.storage.memory import MemoryStore

NOW = 1_760_000_000
APP = "demo/production"
STORAGE_URL = "http://127.0.0.1:9/bucket/"
ACCESS_KEY = "AKIADEMOACCESSKEY"
SECRET_KEY = "demo-secret-never-printed"

Tako = Callable[..., Result]


class LinkedStore(MemoryStore):
    """A MemoryStore whose presigned URLs are http URLs (under ``url``) that :meth:`transport`
    serves."""

    def __init__(self, url: str = STORAGE_URL) -> None:
        super().__init__()
        self.url = url
        self.tamper: Callable[[bytes], bytes] | None = None
        self.fail_writes = False

    def presigned_get_url(self, key: str, expires_in: int) -> str:
        return f"{self.url}{quote(key)}?X-Amz-Credential={ACCESS_KEY}&X-Amz-Expires={expires_in}"

    def open_writer(self, key: str, expected_size: int | None = None) -> Any:
        if self.fail_writes:
            raise StorageError("Upload failed: the bucket is read-only.")
        return super().open_writer(key, expected_size)

    def transport(self) -> httpx.MockTransport:
        def serve(request: httpx.Request) -> httpx.Response:
            key = unquote(request.url.path.removeprefix(httpx.URL(self.url).path))
            try:
                data = self.get_bytes(key)
            except Exception:  # noqa: BLE001 - a missing object is a 404, like S3
                return httpx.Response(404)
            return httpx.Response(200, content=self.tamper(data) if self.tamper else data)

        return httpx.MockTransport(serve)


class Recording(httpx.AsyncBaseTransport):
    """Records each signed request's JSON body, then hands it to the server app.

    Every signed body must name the server it goes to as its ``target`` (checked here, and left
    out of the record); the unsigned ``server_info`` the client asks for that name is not recorded,
    nor are the ``operation_progress`` polls a long command makes while it runs (how many depends
    on how long it takes).
    """

    def __init__(self, name: str, app: Any, log: list[tuple[str, dict[str, Any]]]) -> None:
        self.name = name
        self.inner = httpx.ASGITransport(app=app)
        self.log = log

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body["command"] not in PUBLIC_COMMANDS:
            assert body.pop(TARGET) == self.name, f"a request to {self.name} is not bound to it"
            if body["command"] != OPERATION_PROGRESS:
                self.log.append((self.name, body))
        return await self.inner.handle_async_request(request)


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


@dataclass
class Fleet:
    """Named in-process servers sharing one bucket (and the buckets in ``other_buckets``, by
    name, e.g. a backup copy's)."""

    root: Path
    public_key: Path
    store: LinkedStore = field(default_factory=LinkedStore)
    other_buckets: dict[str, LinkedStore] = field(default_factory=dict)
    services: dict[str, BackupService] = field(default_factory=dict)
    apps: dict[str, Any] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    down: set[str] = field(default_factory=set)
    wrap: Callable[[str, httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None
    clock: float = NOW

    def add(self, name: str) -> BackupService:
        paths = ServerPaths(self.root / name)
        paths.prepare()
        authorize_key(self.public_key, paths.root)
        service = BackupService(paths, name,
                                store_factory=lambda binding: self.other_buckets.get(binding.bucket,
                                                                                     self.store),
                                clock=lambda: self.clock)
        self.services[name] = service
        self.apps[name] = create_app(service, RequestAuth.from_file(paths.authorized_keys))
        return service

    def transport(self, entry: Any) -> httpx.AsyncBaseTransport:
        if entry.name in self.down:
            return httpx.MockTransport(refused)
        transport: httpx.AsyncBaseTransport = Recording(entry.name, self.apps[entry.name], self.requests)
        return self.wrap(entry.name, transport) if self.wrap else transport

    def downloads(self) -> httpx.MockTransport:
        """Serves the presigned URLs of every bucket."""
        stores = [self.store, *self.other_buckets.values()]

        def serve(request: httpx.Request) -> httpx.Response:
            for store in stores:
                if request.url.path.startswith(httpx.URL(store.url).path):
                    return store.transport().handle_request(request)
            return httpx.Response(404)

        return httpx.MockTransport(serve)

    def commands(self) -> list[tuple[str, str]]:
        return [(server, body["command"]) for server, body in self.requests]

    def live_dir(self, name: str, app: str = "demo") -> Path:
        return self.services[name].paths.ensure_data_dir(app, "production") / "app"


def project_toml(servers: list[str], *, backup: bool = True, start: str | None = None) -> str:
    lines = ['name = "demo"']
    if start is not None:
        lines.append(f"start = {start}")
    lines += ["", "[envs.production]", 'route = "demo.example.com"',
              "servers = [" + ", ".join(f'"{s}"' for s in servers) + "]"]
    if backup:
        lines.append('backup = { storage = "backups" }')
    lines += ["", "[envs.staging]", 'route = "staging.demo.example.com"', 'servers = ["la"]',
              "", "[storages.backups]", 'bucket = "demo-backups"', 'endpoint = "https://s3.example.com"',
              'region = "auto"', ""]
    return "\n".join(lines)


def servers_toml(names: list[str], key_path: Path) -> str:
    return "".join(f'[[servers]]\nname = "{name}"\nhost = "127.0.0.1"\nmanagement_port = {9844 + i}\n'
                   f'key_path = "{key_path}"\n\n' for i, name in enumerate(names))


def set_credentials(tako: Callable[..., Result]) -> None:
    result = tako("storages", "credentials", "backups", "--env", "production", "--access-key-id",
                  ACCESS_KEY, "--secret-access-key", SECRET_KEY, "--expires-on", "never")
    assert result.exit_code == 0, result.output


def prepare(tmp_path: Path, tako_home: Path, signer: FileSigner, tako: Tako, monkeypatch: Any,
            servers: tuple[str, ...] = ("la",), *, backup: bool = True, start: str | None = None,
            key_path: Path | None = None) -> Fleet:
    """Write the demo project and config.toml, start in-process servers, route the CLI to them."""
    fleet = Fleet(tmp_path / "servers", Path(f"{signer.path}.pub"))
    for name in servers:
        fleet.add(name)
    monkeypatch.setattr(targets, "rpc_transport", fleet.transport)
    monkeypatch.setattr(targets, "download_transport", fleet.downloads)
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "tako.toml").write_text(project_toml(list(servers), backup=backup, start=start))
    (tako_home / "config.toml").write_text(servers_toml(list(servers), key_path or signer.path))
    monkeypatch.chdir(folder)
    set_credentials(tako)
    return fleet


Demo = Callable[..., Fleet]
"""The ``demo`` fixture (tests/cli/conftest.py): ``demo("la", "ny", **prepare_kw)`` -> a Fleet."""
