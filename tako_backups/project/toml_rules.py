"""Tako's rules for ``[storages.*]`` and ``[envs.*]`` in tako.toml. Each error names the key and
says how to fix it."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..primitives.names import (
    DEVELOPMENT_ENV,
    LOCAL_STORAGE,
    env_name_problem,
    storage_name_problem,
    validation_error,
)
from .model import DEFAULT_IDLE_TIMEOUT, EnvConfig, StorageResource

ENV_KEYS = ("route", "routes", "servers", "storages", "backup", "idle_timeout", "ssl", "source_ip",
            "release")
STORAGE_KEYS = ("provider", "bucket", "endpoint", "region", "force_path_style", "public_base_url")
LOCAL_HINT = 'use storages = { <binding> = "local" } to select built-in local storage'


def _table(value: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"tako.toml key '{key}' must be a table, e.g. [{key}.<name>].")
    return value


def _unknown(table: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"Unknown key '{key}' in {where} of tako.toml. "
                              f"Allowed keys: {', '.join(allowed)}.")


def _text(table: dict[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"tako.toml key '{key}' in {where} must be a string.")
    return value


def check_storages(value: Any) -> dict[str, StorageResource]:
    """Check every ``[storages.<name>]`` resource. Raises ConfigError on the first broken rule."""
    resources: dict[str, StorageResource] = {}
    for name, raw in _table(value, "storages").items():
        where = f"[storages.{name}]"
        if name == LOCAL_STORAGE:
            raise ConfigError("Storage resource 'local' is built in and cannot be declared; "
                              f"remove [storages.local] and {LOCAL_HINT}.")
        problem = storage_name_problem(name)
        if problem:
            raise validation_error(problem, f"{where} in tako.toml")
        if not isinstance(raw, dict):
            raise ConfigError(f"tako.toml key 'storages.{name}' must be a table ({where}).")
        _unknown(raw, STORAGE_KEYS, where)
        provider = _text(raw, "provider", where) or "s3"
        if provider == LOCAL_STORAGE:
            raise ConfigError(f"Storage resource '{name}' cannot set provider 'local'; {LOCAL_HINT}.")
        if provider != "s3":
            raise ConfigError(f"Storage resource '{name}' has unknown provider '{provider}'; "
                              'use provider = "s3".')
        fields = {}
        for key in ("bucket", "endpoint", "region"):
            text = _text(raw, key, where)
            if text is None or not text.strip():
                raise ConfigError(f"Storage resource '{name}' with provider 's3' must set '{key}' "
                                  f"in {where} of tako.toml.")
            fields[key] = text
        force = raw.get("force_path_style", False)
        if not isinstance(force, bool):
            raise ConfigError(f"tako.toml key 'force_path_style' in {where} must be true or false.")
        public = _text(raw, "public_base_url", where)
        resources[name] = StorageResource(
            name=name, bucket=fields["bucket"],
            endpoint=check_url(fields["endpoint"], f"resource '{name}' endpoint"),
            region=fields["region"], force_path_style=force,
            public_base_url=None if public is None
            else check_url(public, f"resource '{name}' public_base_url"),
        )
    return resources


def check_url(url: str, what: str) -> str:
    """An https URL with a host (http only for loopback hosts), normalized. Raises ConfigError."""
    from ..storage.endpoints import check_endpoint

    return check_endpoint(url, what)


def check_envs(value: Any, resources: dict[str, StorageResource]) -> dict[str, EnvConfig]:
    """Check every ``[envs.<name>]`` table against Tako's rules. Raises ConfigError."""
    envs: dict[str, EnvConfig] = {}
    for name, raw in _table(value, "envs").items():
        problem = env_name_problem(name)
        if problem:
            raise validation_error(problem, f"[envs.{name}] in tako.toml")
        if not isinstance(raw, dict):
            raise ConfigError(f"tako.toml key 'envs.{name}' must be a table ([envs.{name}]).")
        envs[name] = _check_env(name, raw, resources)
    return envs


def _check_env(name: str, raw: dict[str, Any], resources: dict[str, StorageResource]) -> EnvConfig:
    where = f"[envs.{name}]"
    _unknown(raw, ENV_KEYS, where)
    if "route" in raw and "routes" in raw:
        raise ConfigError(f"Environment '{name}' cannot have both 'route' and 'routes' in tako.toml; "
                          "keep one of them.")
    route = _text(raw, "route", where)
    routes = raw.get("routes")
    if routes is not None and not (isinstance(routes, list) and all(isinstance(r, str) for r in routes)):
        raise ConfigError(f"tako.toml key 'routes' in {where} must be a list of strings.")
    _text(raw, "release", where)
    idle = raw.get("idle_timeout", DEFAULT_IDLE_TIMEOUT)
    if isinstance(idle, bool) or not isinstance(idle, int) or idle < 0:
        raise ConfigError(f"tako.toml key 'idle_timeout' in {where} must be a whole number of seconds.")
    if idle == 0:
        raise ConfigError(f"Environment '{name}' has invalid idle_timeout 0 in tako.toml; use a number "
                          f"of seconds above 0 (default {DEFAULT_IDLE_TIMEOUT}).")
    servers = raw.get("servers", [])
    if not (isinstance(servers, list) and all(isinstance(s, str) and s.strip() for s in servers)):
        raise ConfigError(f'tako.toml key \'servers\' in {where} must be a list of server names, e.g. '
                          'servers = ["web-1"].')
    return EnvConfig(name=name, servers=tuple(servers), storages=_check_bindings(name, raw, resources),
                     backup_storage=_check_backup(name, raw, resources), route=route,
                     routes=None if routes is None else tuple(routes), idle_timeout=idle)


def _check_bindings(env: str, raw: dict[str, Any], resources: dict[str, StorageResource]) -> dict[str, str]:
    table = raw.get("storages", {})
    if not isinstance(table, dict):
        raise ConfigError(f"tako.toml key 'storages' in [envs.{env}] must be a table, "
                          'e.g. storages = { uploads = "r2" }.')
    bindings: dict[str, str] = {}
    for binding, resource in table.items():
        problem = storage_name_problem(binding)
        if problem:
            raise validation_error(problem, f"binding '{binding}' in [envs.{env}].storages")
        if not isinstance(resource, str):
            raise ConfigError(f"Storage binding '{binding}' in [envs.{env}].storages must name a "
                              "storage resource (a string).")
        problem = storage_name_problem(resource)
        if problem:
            raise validation_error(problem, f"resource '{resource}' in [envs.{env}].storages")
        if env != DEVELOPMENT_ENV and resource != LOCAL_STORAGE and resource not in resources:
            raise ConfigError(f"Environment '{env}' storage '{binding}' references missing storage "
                              f"resource '{resource}'; declare [storages.{resource}] in tako.toml.")
        bindings[binding] = resource
    return bindings


def _check_backup(env: str, raw: dict[str, Any], resources: dict[str, StorageResource]) -> str | None:
    if "backup" not in raw:
        return None
    table = raw["backup"]
    where = f"[envs.{env}].backup"
    if not isinstance(table, dict):
        raise ConfigError(f"tako.toml key 'backup' in [envs.{env}] must be a table, "
                          'e.g. backup = { storage = "backups" }.')
    for key in table:
        if key != "storage":
            raise ConfigError(f"Unknown key '{key}' in {where} of tako.toml; only 'storage' is allowed.")
    storage = table.get("storage")
    if not isinstance(storage, str) or not storage.strip():
        raise ConfigError(f"Environment '{env}' backup.storage must name an S3 storage resource "
                          f'declared under [storages], e.g. backup = {{ storage = "backups" }}.')
    if storage == LOCAL_STORAGE:
        raise ConfigError(f"Environment '{env}' cannot back up to the built-in 'local' storage; set "
                          "backup.storage to an S3 resource declared under [storages].")
    resource = resources.get(storage)
    if resource is None:
        raise ConfigError(f"Environment '{env}' backup.storage references missing storage resource "
                          f"'{storage}'; declare [storages.{storage}] in tako.toml.")
    if resource.provider != "s3":
        raise ConfigError(f"Environment '{env}' backup storage '{storage}' must be S3-compatible.")
    if resource.public_base_url is not None:
        raise ConfigError(f"Environment '{env}' backs up to storage resource '{storage}', which has a "
                          "public_base_url; backup storage must be private. Remove public_base_url or "
                          "use another resource.")
    return storage
