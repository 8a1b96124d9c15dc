"""Tako's first pass over tako.toml (tako/src/config/tako_toml/parse.rs): the top-level key
allow-list, the type of every top-level key, and the keys of ``[build]``, ``[[build_stages]]``,
``[workflows]``, ``[servers.<name>]``, ``[images]``, ``[vars]``, ``[storages.*]`` and
``[envs.*]``, with Tako's texts and in Tako's order.

Tako reads ``[storages.*]``, ``[envs.*]`` (with ``backup``) and ``[images]`` with serde, so their
mistakes read ``Failed to parse TOML: `` + serde's text (e.g. ``unknown field `x`, expected one of
`route`, ...``); Tako's text also carries a line and column of a re-serialized copy of the table,
which we leave out. The rest are ``Validation error: ...`` texts. Where a mistake is one of our
settings written in the wrong file, a hint follows on its own line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..primitives.start_command import parse_start
from .toml_serde import (
    U32_MAX,
    invalid,
    known_field,
    our_key_hint,
    serde_bool,
    serde_failure,
    serde_keys,
    serde_string,
    serde_strings,
    serde_u32,
    serde_variant,
    type_error,
)

TOP_LEVEL_KEYS = ("name", "runtime", "container", "package_manager", "preset", "dev", "start", "app_root",
                  "main", "assets", "release", "build", "build_stages", "workflows", "images", "vars", "envs",
                  "storages", "servers")
ENV_FIELDS = ("route", "routes", "servers", "storages", "backup", "source_ip", "ssl", "idle_timeout",
              "release")
STORAGE_FIELDS = ("provider", "bucket", "endpoint", "region", "force_path_style", "public_base_url")
IMAGES_FIELDS = ("local_patterns", "remote_patterns", "sizes", "qualities", "formats")
BUILD_KEYS = ("run", "install", "cwd", "include", "exclude")
STAGE_KEYS = ("name", "cwd", "install", "run", "exclude")
PROVIDERS = ("local", "s3")
SOURCE_IP_MODES = ("auto", "direct", "cloudflare-proxy", "trusted-proxy")
SSL_PROVIDERS = ("letsencrypt", "cloudflare")
SETTINGS_HINT = ("Tako refuses keys it does not know; tako-backups' own settings live in tako-backups.toml "
                 "next to tako.toml, which Tako never reads.")


def _string(table: Mapping[str, Any], key: str, label: str | None = None) -> None:
    if key in table and not isinstance(table[key], str):
        raise invalid(f"'{label or key}' must be a string")


def _string_array(table: Mapping[str, Any], key: str, label: str | None = None) -> None:
    value = table.get(key)
    if key in table and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise invalid(f"'{label or key}' must be an array of strings")


def _nonempty_string_array(value: Any, path: str) -> None:
    if not isinstance(value, list) or not value:
        raise invalid(f"'{path}' must be a non-empty array of strings")
    for item in value:
        if not isinstance(item, str):
            raise invalid(f"'{path}' must be a non-empty array of strings")
        if not item.strip():
            raise invalid(f"'{path}' entries cannot be empty")


def _u32(value: Any, path: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"'{path}' must be an integer")
    if not 0 <= value <= U32_MAX:
        raise invalid(f"'{path}' must be between 0 and {U32_MAX}")


def check_top_level(data: Mapping[str, Any]) -> None:
    """The top-level allow-list, then each top-level key in the order Tako parses them.

    Raises ConfigError with Tako's text for the first mistake.
    """
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            hint = our_key_hint(key, "[envs.<env>]") or SETTINGS_HINT
            raise invalid(f"Unknown key '{key}'", hint)
    for key in ("name", "main", "runtime", "container", "package_manager", "preset"):
        _string(data, key)
    runtime = data.get("runtime")
    if isinstance(runtime, str) and "@" in runtime.strip() and not runtime.strip().split("@", 1)[1].strip():
        raise invalid("runtime version cannot be empty")
    _string_array(data, "dev")
    parse_start(data.get("start"))
    _string(data, "app_root")
    _string_array(data, "assets")
    _string(data, "release")
    _check_build(data.get("build"))
    _check_build_stages(data.get("build_stages"))
    if "workflows" in data:
        check_workflows(data["workflows"], "workflows")
    if "images" in data:
        for key in serde_keys(data["images"], IMAGES_FIELDS, "ImagesConfig", "[images]"):
            known_field(key, IMAGES_FIELDS, "[images]")
    storages = data.get("storages")
    if storages is not None:
        if not isinstance(storages, Mapping):
            raise invalid("'storages' must be a table")
        for name, resource in storages.items():
            check_storage_fields(resource, f"[storages.{name}]")
    _check_vars(data.get("vars"))
    envs = data.get("envs")
    if isinstance(envs, Mapping):
        for name, env in envs.items():
            check_env_fields(env, name)
    servers = data.get("servers")
    if isinstance(servers, Mapping):
        for server in servers.values():
            if not isinstance(server, Mapping):
                raise invalid("[servers.<name>] must be a table")
            for key in server:
                if key != "workflows":
                    raise invalid(f"Unknown key 'servers.<name>.{key}'")
            if "workflows" in server:
                check_workflows(server["workflows"], "workflows")


def _check_build(build: Any) -> None:
    if build is None:
        return
    if not isinstance(build, Mapping):
        raise invalid("'build' must be a table ([build])")
    for key in build:
        if key not in BUILD_KEYS:
            raise invalid(f"Unknown key 'build.{key}'")
    for key in ("run", "install", "cwd"):
        _string(build, key)
    for key in ("include", "exclude"):
        _string_array(build, key)


def _check_build_stages(stages: Any) -> None:
    if stages is None:
        return
    if not isinstance(stages, list):
        raise invalid("'build_stages' must be an array of tables ([[build_stages]])")
    for index, stage in enumerate(stages):
        path = f"build_stages[{index}]"
        if not isinstance(stage, Mapping):
            raise invalid(f"'{path}' must be a table")
        for key in stage:
            if key not in STAGE_KEYS:
                raise invalid(f"Unknown key '{path}.{key}'")
        for key in ("name", "cwd", "install", "run"):
            if key not in stage:
                if key == "run":
                    raise invalid(f"'{path}.run' is required")
                continue
            if not isinstance(stage[key], str):
                raise invalid(f"'{path}.{key}' must be a string")
            if not stage[key].strip():
                raise invalid(f"'{path}.{key}' cannot be empty")
        _string_array(stage, "exclude", f"{path}.exclude")


def check_workflows(value: Any, key: str) -> None:
    """``[workflows]`` (or ``[servers.<name>.workflows]``): ``workers``, ``concurrency`` and worker
    groups (tables of ``workers``, ``concurrency``, ``run``). Raises ConfigError."""
    if not isinstance(value, Mapping):
        raise invalid(f"'{key}' must be a table")
    for field, item in value.items():
        if field in ("workers", "concurrency"):
            _u32(item, f"{key}.{field}")
            continue
        path = f"{key}.{field}"
        if not isinstance(item, Mapping):
            raise invalid(f"'{path}' must be a table")
        for name, setting in item.items():
            if name in ("workers", "concurrency"):
                _u32(setting, f"{path}.{name}")
            elif name == "run":
                _nonempty_string_array(setting, f"{path}.run")
            else:
                raise invalid(f"Unknown key '{path}.{name}'")


def _check_vars(value: Any) -> None:
    if not isinstance(value, Mapping):
        return
    for key, item in value.items():
        if isinstance(item, Mapping):
            for name, var in item.items():
                _check_var(var, f"[vars.{key}].{name}")
        else:
            _check_var(item, f"[vars].{key}")


def _check_var(value: Any, path: str) -> None:
    if isinstance(value, (list, Mapping)):
        raise invalid(f"{path} must be a string, number, boolean, or datetime")


def check_storage_fields(resource: Any, where: str) -> None:
    """A ``[storages.<name>]`` table as serde reads it. Raises ConfigError."""
    for key in serde_keys(resource, STORAGE_FIELDS, "StorageResourceConfig", where):
        known_field(key, STORAGE_FIELDS, where)
        value = resource[key]
        if key == "provider":
            serde_variant(value, PROVIDERS, "StorageProvider")
        elif key == "force_path_style":
            serde_bool(value)
        else:
            serde_string(value)


def check_env_fields(env: Any, name: str) -> None:
    """An ``[envs.<name>]`` table (and its ``backup``) as serde reads it. Raises ConfigError."""
    for key in serde_keys(env, ENV_FIELDS, "EnvConfig", f"[envs.{name}]"):
        known_field(key, ENV_FIELDS, f"[envs.{name}]")
        value = env[key]
        if key in ("route", "release"):
            serde_string(value)
        elif key in ("routes", "servers"):
            serde_strings(value)
        elif key == "storages":
            if not isinstance(value, Mapping):
                raise type_error(value, "a map")
            for item in value.values():
                serde_string(item)
        elif key == "backup":
            for field in serde_keys(value, ("storage",), "BackupConfig", f"[envs.{name}]"):
                known_field(field, ("storage",), f"[envs.{name}]")
                serde_string(value[field])
            if "storage" not in value:
                raise serde_failure("missing field `storage`")
        elif key == "source_ip":
            serde_variant(value, SOURCE_IP_MODES, "SourceIpMode")
        elif key == "ssl":
            serde_variant(value, SSL_PROVIDERS, "SslProvider")
        else:
            serde_u32(value)
