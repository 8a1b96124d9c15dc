"""The global ``config.toml``: the user's servers, read as Tako reads them
(tako/src/config/servers_toml.rs): ``[[servers]]`` entries with ``name``, ``host``, ``port``,
``http_port``, ``https_port``, ``description``, ``key_path`` and ``arch`` + ``libc``, Tako's
checks and texts; other top-level keys and other keys of an entry are ignored, as Tako ignores
them.

Our extensions (Tako ignores each of them, so the file still works in Tako):

- ``management_port`` (default 9844): the port of the server's signed RPC endpoint;
- ``tls_fingerprint`` (``sha256:<64 hex>``, what ``tako-server identity`` prints): every RPC to
  the server then goes over HTTPS to that certificate only;
- ``key_path`` is also the key our management requests are signed with;
- two entries may share a host when their ``management_port`` differs (servers behind tunnels);
- the ``[servers.<name>]`` table form. Tako ignores that form entirely (it would see no servers),
  so we recommend and write ``[[servers]]``.

``load_servers(extensions=False)`` reads exactly what Tako reads (no table form, no shared hosts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..primitives.names import server_name_problem
from ..remote.pinning import parse_fingerprint
from .model import Project
from .paths import servers_config_path
from .tako_toml import read_toml
from .toml_serde import invalid

DEFAULT_MANAGEMENT_PORT = 9844
TAKO_PORTS = {"port": 22, "http_port": 80, "https_port": 443}
ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
LIBCS = {"glibc": "glibc", "gnu": "glibc", "gnu-libc": "glibc", "gnu_libc": "glibc", "gnu libc": "glibc",
         "gnu c library": "glibc", "musl": "musl"}
TABLE_FORM = ("{path} lists servers as [servers.<name>] tables, which Tako ignores; write each as a "
              "[[servers]] entry with name = \"<name>\" and its host.")


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


def load_servers(path: Path | None = None, *, extensions: bool = True) -> Servers:
    """Read config.toml (``$TAKO_HOME/config.toml`` or the platform config dir by default); with
    ``extensions`` False exactly as Tako reads it.

    A missing file means no servers. Raises ConfigError when it is unreadable or not valid TOML,
    or an entry breaks one of Tako's rules (Tako's text) or of our extensions.
    """
    path = path or servers_config_path()
    if not path.exists():
        return Servers(path=path)
    raw = read_toml(path, "config.toml").unwrap().get("servers")
    if isinstance(raw, list):
        items = [(_entry_name(item), item) for item in raw]
    elif isinstance(raw, dict) and raw:
        if not extensions:
            raise ConfigError(TABLE_FORM.format(path=path))
        items = [(name, item if isinstance(item, dict) else {}) for name, item in raw.items()]
    else:
        return Servers(path=path)
    entries: dict[str, ServerEntry] = {}
    for name, item in items:
        entry = _entry(name, item, path)
        if name in entries:
            raise ConfigError(f"Duplicate server name: {name}")
        if any(e.host == entry.host and (not extensions or e.management_port == entry.management_port)
               for e in entries.values()):
            raise ConfigError(f"Duplicate server host: {entry.host}")
        entries[name] = entry
    for entry in entries.values():
        _check_entry(entry)
    return Servers(path=path, entries=entries)


def _entry_name(item: Any) -> str:
    name = item.get("name") if isinstance(item, dict) else None
    if not isinstance(name, str):
        raise invalid("Server entry must have a 'name' field")
    return name


def _string(item: dict[str, Any], name: str, key: str) -> str | None:
    value = item.get(key)
    if value is not None and not isinstance(value, str):
        raise invalid(f"Server '{name}' field '{key}' must be a string")
    return value


def _port(item: dict[str, Any], name: str, key: str, default: int) -> int:
    value = item.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"Server '{name}' field '{key}' must be an integer")
    if not 0 <= value <= 65535:
        raise invalid(f"Server '{name}' field '{key}' must be between 0 and 65535")
    return value


def _entry(name: str, item: dict[str, Any], path: Path) -> ServerEntry:
    """One entry, read in Tako's order (host, ports, description, key_path, arch/libc), then our
    extension keys. Raises ConfigError."""
    host = item.get("host")
    if not isinstance(host, str):
        raise invalid(f"Server '{name}' must have a 'host' field")
    ports = {key: _port(item, name, key, default) for key, default in TAKO_PORTS.items()}
    description = item.get("description") if isinstance(item.get("description"), str) else None
    key_path = _string(item, name, "key_path")
    arch, libc = _string(item, name, "arch"), _string(item, name, "libc")
    if (arch is None) != (libc is None):
        raise invalid(f"Server '{name}' must set both `arch` and `libc` together inside [[servers]]")
    if arch is not None and libc is not None:
        if arch.strip().lower() not in ARCHES:
            raise invalid(f"Invalid target metadata for server '{name}': Unsupported server target "
                          f"architecture '{arch.strip()}'")
        if libc.strip().lower() not in LIBCS:
            raise invalid(f"Invalid target metadata for server '{name}': Unsupported server target libc "
                          f"'{libc.strip()}'")
    management_port = item.get("management_port", DEFAULT_MANAGEMENT_PORT)
    if isinstance(management_port, bool) or not isinstance(management_port, int) \
            or not 0 < management_port < 65536:
        raise ConfigError(f"Server '{name}' field 'management_port' must be a port number from 1 to "
                          f"65535 (in {path}).")
    pin = item.get("tls_fingerprint")
    if pin is not None:
        try:
            pin = parse_fingerprint(pin) if isinstance(pin, str) else parse_fingerprint("")
        except ConfigError as exc:
            raise ConfigError(f"Server '{name}' field 'tls_fingerprint' (in {path}): {exc}") from None
    resolved = None
    if key_path is not None and key_path.strip():
        resolved = Path(key_path).expanduser()
        if not resolved.is_absolute():
            resolved = path.parent / resolved
    return ServerEntry(name=name, host=host, description=description, key_path=resolved,
                       management_port=management_port, tls_fingerprint=pin, **ports)


def _check_entry(entry: ServerEntry) -> None:
    """Tako's checks after reading every entry. Raises ConfigError."""
    name = entry.name
    problem = server_name_problem(name)
    if problem:
        raise invalid(problem)
    if not entry.host:
        raise invalid(f"Server '{name}' has empty host")
    ports = ((entry.port, "port"), (entry.http_port, "HTTP port"), (entry.https_port, "HTTPS port"))
    for value, label in ports:
        if value == 0:
            raise invalid(f"Server '{name}' has invalid {label} 0")
    if entry.http_port == entry.https_port:
        raise invalid(f"Server '{name}' HTTP and HTTPS ports must differ")


def servers_for_env(project: Project, servers: Servers, env: str,
                    only: str | None = None) -> list[ServerEntry]:
    """The servers of an env (``[envs.<env>].servers``, sorted and deduplicated as Tako does), or
    just ``only`` when given.

    Raises ConfigError (Tako's texts; our hint on its own line) when the env is not declared,
    lists no servers, names a server that is not in config.toml, or ``only`` is not one of the
    env's servers.
    """
    config = project.env(env)
    names = sorted(set(config.servers))
    if only is not None:
        if only not in servers:
            raise not_found_error(only, servers)
        if names and only not in names:
            raise ConfigError(f"Server '{only}' is not configured for environment '{env}'.")
        names = [only]
    if not names:
        if not len(servers):
            raise ConfigError(f"No servers have been added. Run 'tako servers add <host>' first, then add it "
                              f"under [envs.{env}].servers in tako.toml.\n{_add_hint(servers)}")
        raise ConfigError(f"No servers configured for environment '{env}'. Add "
                          f'`servers = ["<name>"]` under [envs.{env}] in tako.toml.')
    missing = [name for name in names if name not in servers]
    if missing:
        raise not_found_error(missing[0], servers)
    return [servers.entries[name] for name in names]


def _add_hint(servers: Servers, name: str = "<name>") -> str:
    return (f"tako-backups has no `tako servers add`: add a [[servers]] entry with name = \"{name}\" and "
            f"its host to {servers.path}.")


def not_found_error(name: str, servers: Servers) -> ConfigError:
    """Tako's ``Server '{name}' not found in config.toml``, with where to add it."""
    return ConfigError(f"Server '{name}' not found in config.toml\n{_add_hint(servers, name)}")
