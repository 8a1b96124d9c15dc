"""The global ``config.toml``: the user's servers (``[servers.<name>]`` tables; Tako's older
``[[servers]]`` list with a ``name`` key is read too).

Our extensions: ``management_port`` (default 9844), the port of the server's signed RPC endpoint,
and ``tls_fingerprint`` (``sha256:<64 hex>``, what ``tako-server identity`` prints): with it every
RPC to the server goes over HTTPS to that certificate only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..remote.pinning import parse_fingerprint
from .model import Project
from .paths import servers_config_path
from .tako_toml import read_toml

DEFAULT_MANAGEMENT_PORT = 9844
SERVER_KEYS = ("host", "port", "http_port", "https_port", "description", "key_path", "management_port",
               "tls_fingerprint", "arch", "libc")
_PORTS = {"port": 22, "http_port": 80, "https_port": 443, "management_port": DEFAULT_MANAGEMENT_PORT}


@dataclass(frozen=True)
class ServerEntry:
    """One server from config.toml."""

    name: str
    host: str
    port: int = 22
    http_port: int = 80
    https_port: int = 443
    description: str | None = None
    key_path: Path | None = None
    management_port: int = DEFAULT_MANAGEMENT_PORT
    tls_fingerprint: str | None = None

    @property
    def management_url(self) -> str:
        """``http://{host}:{management_port}/rpc`` (``https`` with a TLS pin; IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        scheme = "http" if self.tls_fingerprint is None else "https"
        return f"{scheme}://{host}:{self.management_port}/rpc"


@dataclass(frozen=True)
class Servers:
    """Every server in config.toml (none when the file does not exist)."""

    path: Path
    entries: dict[str, ServerEntry] = field(default_factory=dict)

    def get(self, name: str) -> ServerEntry | None:
        return self.entries.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __len__(self) -> int:
        return len(self.entries)


def load_servers(path: Path | None = None) -> Servers:
    """Read config.toml (``$TAKO_HOME/config.toml`` or the platform config dir by default).

    A missing file means no servers. Raises ConfigError when it is unreadable, not valid TOML, or a
    server entry has an unknown key, a missing host or a bad port.
    """
    path = path or servers_config_path()
    if not path.exists():
        return Servers(path=path)
    data = read_toml(path, "config.toml").unwrap()
    raw = data.get("servers", {})
    entries: dict[str, ServerEntry] = {}
    if isinstance(raw, list):
        for item in raw:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
                raise ConfigError(f"Each [[servers]] entry in {path} needs a 'name'.")
            name = item["name"]
            if name in entries:
                raise ConfigError(f"Server '{name}' is listed twice in {path}.")
            entries[name] = _entry(name, {k: v for k, v in item.items() if k != "name"}, path)
    elif isinstance(raw, dict):
        for name, item in raw.items():
            if not isinstance(item, dict):
                raise ConfigError(f"[servers.{name}] in {path} must be a table with a host.")
            entries[name] = _entry(name, item, path)
    else:
        raise ConfigError(f"'servers' in {path} must be tables like [servers.<name>].")
    return Servers(path=path, entries=entries)


def _entry(name: str, item: dict[str, Any], path: Path) -> ServerEntry:
    where = f"[servers.{name}] in {path}"
    for key in item:
        if key not in SERVER_KEYS:
            raise ConfigError(f"Unknown key '{key}' in {where}. Known keys: {', '.join(SERVER_KEYS[:8])}.")
    host = item.get("host")
    if not isinstance(host, str) or not host.strip():
        raise ConfigError(f"{where} needs a host, e.g. host = \"203.0.113.10\".")
    ports = {}
    for key, default in _PORTS.items():
        value = item.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            raise ConfigError(f"'{key}' in {where} must be a port number from 1 to 65535.")
        ports[key] = value
    description = item.get("description")
    if description is not None and not isinstance(description, str):
        raise ConfigError(f"'description' in {where} must be a string.")
    key_path = item.get("key_path")
    if key_path is not None and (not isinstance(key_path, str) or not key_path.strip()):
        raise ConfigError(f"'key_path' in {where} must be the path of an SSH private key.")
    pin = item.get("tls_fingerprint")
    if pin is not None:
        try:
            pin = parse_fingerprint(pin) if isinstance(pin, str) else parse_fingerprint("")
        except ConfigError as exc:
            raise ConfigError(f"'tls_fingerprint' in {where}: {exc}") from None
    resolved = None
    if key_path is not None:
        resolved = Path(key_path).expanduser()
        if not resolved.is_absolute():
            resolved = path.parent / resolved
    return ServerEntry(name=name, host=host.strip(), description=description, key_path=resolved,
                       tls_fingerprint=pin, **ports)


def servers_for_env(project: Project, servers: Servers, env: str,
                    only: str | None = None) -> list[ServerEntry]:
    """The servers an env deploys to (``[envs.<env>].servers``), or just ``only`` when given.

    Raises ConfigError when the env is not declared, lists no servers, names a server that is not
    in config.toml, or ``only`` is not one of the env's servers; each message says how to fix it.
    """
    config = project.env(env)
    names = list(dict.fromkeys(config.servers))
    if only is not None:
        if only not in servers:
            raise ConfigError(_not_found(only, servers))
        if names and only not in names:
            raise ConfigError(f"Server '{only}' is not configured for environment '{env}'.")
        names = [only]
    if not names:
        if not len(servers):
            raise ConfigError(f"No servers have been added. Add a [servers.<name>] table with a host to "
                              f"{servers.path}, then list it under [envs.{env}].servers in tako.toml.")
        raise ConfigError(f"No servers configured for environment '{env}'. Add "
                          f'`servers = ["<name>"]` under [envs.{env}] in tako.toml.')
    missing = [name for name in names if name not in servers]
    if missing:
        raise ConfigError(_not_found(missing[0], servers))
    return [servers.entries[name] for name in names]


def _not_found(name: str, servers: Servers) -> str:
    return (f"Server '{name}' not found in config.toml ({servers.path}). Add a [servers.{name}] table "
            "with its host there.")
