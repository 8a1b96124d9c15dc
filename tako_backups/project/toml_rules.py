"""Tako's checks of ``[envs.*]`` and ``[storages.*]`` in tako.toml (tako/src/config/tako_toml/
validation.rs), after :mod:`.toml_parse` has checked their keys and types: every env in file
order, then every storage resource, the first broken rule reported with Tako's text.

One extension of ours, off when ``extensions`` is False: an endpoint may be plain ``http://`` to a
loopback host (a local SeaweedFS), where Tako accepts only ``https://``. Beyond Tako, an endpoint
with credentials, a query or a fragment is refused (see :mod:`..storage.endpoints`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..primitives.names import DEVELOPMENT_ENV, LOCAL_STORAGE, server_name_problem, storage_name_problem
from .model import DEFAULT_IDLE_TIMEOUT, EnvConfig, StorageResource
from .toml_serde import invalid

LOCAL_DECLARED = ("Storage resource 'local' is built in and cannot be declared; use storages = "
                  '{ <binding> = "local" } to select local storage')
LOOPBACK_HINT = "tako-backups also accepts http:// for loopback hosts such as 127.0.0.1 (Tako does not)."


def check_envs(envs: Any, storages: Mapping[str, Any]) -> dict[str, EnvConfig]:
    """Every ``[envs.<name>]`` table, checked against the declared ``storages`` (raw tables).

    Tables that are not tables are ignored, as Tako ignores them. Raises ConfigError.
    """
    if not isinstance(envs, Mapping):
        return {}
    return {name: _check_env(name, raw, storages) for name, raw in envs.items()}


def _check_env(name: str, raw: Mapping[str, Any], storages: Mapping[str, Any]) -> EnvConfig:
    development = name == DEVELOPMENT_ENV
    route, routes = raw.get("route"), raw.get("routes")
    if route is not None and routes is not None:
        raise invalid(f"Environment '{name}' cannot have both 'route' and 'routes'")
    if not development and route is None and routes is None:
        raise invalid(f"Environment '{name}' must define either 'route' or 'routes'")
    if routes is not None and not routes and not development:
        raise invalid(f"Environment '{name}' has empty 'routes'; define at least one route")
    for pattern in ([route] if route is not None else []) + list(routes or []):
        _check_route(pattern)
    idle = raw.get("idle_timeout", DEFAULT_IDLE_TIMEOUT)
    if idle == 0:
        raise invalid(f"Environment '{name}' has invalid idle_timeout 0")
    servers = tuple(raw.get("servers", []))
    for server in servers:
        problem = server_name_problem(server)
        if problem:
            raise invalid(problem)
    bindings = dict(raw.get("storages", {}))
    for binding, resource in bindings.items():
        for label in (binding, resource):
            problem = storage_name_problem(label)
            if problem:
                raise invalid(problem)
        if not development and resource != LOCAL_STORAGE and resource not in storages:
            raise invalid(f"Environment '{name}' storage '{binding}' references missing storage resource "
                          f"'{resource}'")
    backup = raw.get("backup")
    backup_storage = None if backup is None else _check_backup(name, backup["storage"], storages)
    return EnvConfig(name=name, servers=servers, storages=bindings, backup_storage=backup_storage,
                     route=route, routes=None if routes is None else tuple(routes), idle_timeout=idle)


def _check_backup(env: str, storage: str, storages: Mapping[str, Any]) -> str:
    if not storage:
        raise invalid(f"Environment '{env}' backup.storage cannot be empty")
    problem = storage_name_problem(storage)
    if problem:
        raise invalid(problem)
    if storage == LOCAL_STORAGE:
        raise invalid(f"Environment '{env}' backup uses local storage, but backups require S3-compatible "
                      "storage")
    resource = storages.get(storage)
    if resource is None:
        raise invalid(f"Environment '{env}' backup references missing storage resource '{storage}'")
    if resource.get("provider", "s3") != "s3":
        raise invalid(f"Environment '{env}' backup storage resource '{storage}' must use provider 's3'")
    if resource.get("public_base_url") is not None:
        raise invalid(f"Environment '{env}' backup storage resource '{storage}' must be private; remove "
                      "public_base_url or use a separate private storage resource")
    return storage


def _check_route(pattern: str) -> None:
    """Tako's route pattern rules (``Invalid route pattern: ...``, no ``Validation error``)."""
    def bad(text: str) -> ConfigError:
        return ConfigError(f"Invalid route pattern: {text}")

    if not pattern:
        raise bad("Route pattern cannot be empty")
    for ch in pattern:
        if not (ch.isascii() and ch.isalnum()) and ch not in ".-*/":
            raise bad(f"Invalid character in route pattern: '{ch}'")
    if "*" in pattern:
        host, *path = pattern.split("/")
        if "*" in host and not host.startswith("*."):
            raise bad("Wildcard in hostname must be at the start (e.g., *.example.com)")
        if any("*" in part and part != "*" for part in path):
            raise bad("Wildcard in path must be a complete segment (e.g., /api/*)")


def check_storages(storages: Mapping[str, Any], *, extensions: bool = True) -> dict[str, StorageResource]:
    """Every ``[storages.<name>]`` resource (all S3: ``local`` cannot be declared), endpoints
    normalized. Raises ConfigError."""
    resources: dict[str, StorageResource] = {}
    for name, raw in storages.items():
        problem = storage_name_problem(name)
        if problem:
            raise invalid(problem)
        if name == LOCAL_STORAGE:
            raise invalid(LOCAL_DECLARED)
        if raw.get("provider", "s3") == LOCAL_STORAGE:
            raise invalid(f"Storage resource '{name}' cannot set provider 'local'; use storages = "
                          '{ <binding> = "local" } to select built-in local storage')
        for key in ("bucket", "endpoint", "region"):
            if not (raw.get(key) or "").strip():
                raise invalid(f"Storage resource '{name}' with provider 's3' must set '{key}'")
        endpoint = _check_url(raw["endpoint"], name, "endpoint", extensions)
        public = raw.get("public_base_url")
        if public is not None:
            public = _check_url(public, name, "public_base_url", extensions)
        resources[name] = StorageResource(
            name=name, bucket=raw["bucket"], endpoint=endpoint, region=raw["region"],
            force_path_style=raw.get("force_path_style", False), public_base_url=public)
    return resources


def _check_url(value: str, resource: str, kind: str, extensions: bool) -> str:
    """Tako's ``validate_https_url`` for ``storages.{resource}.{kind}`` (plus our loopback
    ``http://`` when ``extensions``), then our own endpoint rules; returns the URL normalized.
    Raises ConfigError."""
    from ..storage.endpoints import check_endpoint, is_loopback_host

    field = f"storages.{resource}.{kind}"
    problem = url_parse_problem(value)
    if problem is not None:
        raise invalid(f"'{field}' must be a valid URL: {problem}")
    parts = urlsplit(value.strip())
    scheme = parts.scheme.lower()
    if scheme != "https" and not (extensions and scheme == "http" and is_loopback_host(parts.hostname or "")):
        raise invalid(f"'{field}' must use https", LOOPBACK_HINT if extensions and scheme == "http" else None)
    if not parts.hostname:
        raise invalid(f"'{field}' must include a host")
    return check_endpoint(value, f"resource '{resource}' {kind}")


def url_parse_problem(value: str) -> str | None:
    """What the URL parser Tako uses (the ``url`` crate) would say about ``value``, for the common
    mistakes: no scheme, an empty host, a bad port or IPv6 literal, a space in the host."""
    text = value.strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        return "invalid IPv6 address"
    if not parts.scheme:
        return "relative URL without a base"
    if parts.scheme.lower() in ("http", "https"):
        if not parts.netloc or not parts.hostname:
            return "empty host"
        try:
            parts.port  # noqa: B018 -- raises ValueError for a bad port
        except ValueError:
            return "invalid port number"
        if any(ch in parts.hostname for ch in " <>^|%\\\"`{}"):
            return "invalid domain character"
    return None
