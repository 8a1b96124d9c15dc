"""Tako's checks of tako.toml's top-level keys after parsing (tako/src/config/tako_toml/
validation.rs, in its order): ``name``, ``main``, ``preset``, ``runtime``, ``container``,
``assets``, ``app_root``, workflow worker groups, ``[servers.<name>]`` names, ``[build]`` and
``[[build_stages]]``. ``[envs.*]`` and ``[storages.*]`` follow in :mod:`.toml_rules`.

The input has passed :func:`.toml_parse.check_top_level`, so every value has its type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..primitives.names import app_name_problem, server_name_problem
from .toml_serde import invalid

RUNTIMES = ("bun", "node", "go")


def check_top_level_rules(data: Mapping[str, Any]) -> None:
    """Raises ConfigError with Tako's text for the first broken rule."""
    name = data.get("name")
    if name is not None:
        problem = app_name_problem(name)
        if problem:
            raise invalid(problem)
    main = data.get("main")
    if main is not None and not main.strip():
        raise invalid("main cannot be empty")
    _check_preset(data.get("preset"))
    runtime = data.get("runtime")
    if runtime is not None:
        runtime_id = runtime.strip().split("@", 1)[0].strip()
        if not runtime_id:
            raise invalid("runtime cannot be empty")
        if runtime_id not in RUNTIMES:
            raise invalid("runtime must be one of: bun, node, go")
    if data.get("container") is not None:
        _relative_file(data["container"], "container")
        _check_container(data)
    for asset in data.get("assets", []):
        _relative_path(asset, "assets entry", entry=True)
    if data.get("app_root") is not None:
        _relative_dir(data["app_root"], "app_root")
    _worker_groups(data.get("workflows"))
    servers = data.get("servers")
    if isinstance(servers, Mapping):
        for server_name, server in servers.items():
            problem = server_name_problem(server_name)
            if problem:
                raise invalid(problem)
            _worker_groups(server.get("workflows"))
    _check_build(data.get("build") or {}, data.get("build_stages") or [])


def _check_preset(preset: str | None) -> None:
    if preset is None:
        return
    trimmed = preset.strip()
    if not trimmed:
        raise invalid("preset cannot be empty")
    if trimmed.startswith("github:"):
        raise invalid("github preset references are not supported; use official aliases only.")
    if ":" in trimmed:
        raise invalid("preset must be an official alias (for example `tanstack-start`); ':' references "
                      "are not supported.")
    if "/" in trimmed:
        raise invalid("preset must not include runtime namespace; set top-level `runtime` and use a local "
                      'preset name (for example `preset = "tanstack-start"`).')


def _check_container(data: Mapping[str, Any]) -> None:
    build = data.get("build") or {}
    if (data.get("main") or "").strip():
        raise invalid("container releases cannot set main; the image command starts the app")
    if data.get("assets"):
        raise invalid("container releases cannot set assets; use the Dockerfile and .dockerignore to "
                      "control the image")
    if data.get("start"):
        raise invalid("container releases cannot set start; the image command starts the app")
    if any((build.get(key) or "").strip() for key in ("run", "install", "cwd")) \
            or build.get("include") or build.get("exclude"):
        raise invalid("container releases cannot use [build]; the Dockerfile owns production build steps")
    if data.get("build_stages"):
        raise invalid("container releases cannot use [[build_stages]]; the Dockerfile owns production "
                      "build steps")


def _parts(value: str) -> list[str]:
    return value.strip().split("/")


def _relative_file(value: str, field: str) -> None:
    trimmed = value.strip()
    if not trimmed:
        raise invalid(f"{field} cannot be empty")
    if trimmed.startswith("/"):
        raise invalid(f"{field} must be a relative path")
    if ".." in _parts(trimmed):
        raise invalid(f"{field} must not contain '..'")
    if _parts(trimmed)[0] == ".":
        raise invalid(f"{field} must not contain '.' path segments")


def _relative_dir(value: str, field: str) -> None:
    trimmed = value.strip()
    if not trimmed:
        raise invalid(f"'{field}' cannot be empty")
    if trimmed.startswith("/"):
        raise invalid(f"'{field}' must be a relative path")
    if ".." in _parts(trimmed):
        raise invalid(f"'{field}' must not contain '..'")


def _relative_path(value: str, field: str, *, entry: bool = False) -> None:
    """An ``assets`` entry or a build glob (``{field} entry '{value}' must ...``)."""
    trimmed = value.strip()
    if not trimmed:
        raise invalid("assets entry cannot be empty" if entry else f"{field} entries cannot be empty")
    label = field if entry else f"{field} entry"
    if trimmed.startswith("/"):
        raise invalid(f"{label} '{value}' must be relative to project root")
    if ".." in _parts(trimmed):
        raise invalid(f"{label} '{value}' must not contain '..'")


def _worker_groups(workflows: Any) -> None:
    if not isinstance(workflows, Mapping):
        return
    for group in workflows:
        if group in ("workers", "concurrency"):
            continue
        if server_name_problem(group):
            raise invalid(f"Workflow worker group '{group}' must start with a lowercase letter and contain "
                          "only lowercase letters, numbers, and hyphens")


def _check_build(build: Mapping[str, Any], stages: list[Mapping[str, Any]]) -> None:
    if build.get("cwd") is not None:
        _relative_dir(build["cwd"], "build.cwd")
    for key in ("include", "exclude"):
        for pattern in build.get(key, []):
            _relative_path(pattern, f"build.{key}")
    if (build.get("run") or "").strip() and stages:
        raise invalid("Cannot use both [build] with 'run' and [[build_stages]]; they are mutually exclusive.")
    if stages and (build.get("include") or build.get("exclude")):
        raise invalid("Cannot use [build] include/exclude with [[build_stages]]; use per-stage exclude "
                      "instead.")
    for index, stage in enumerate(stages):
        cwd = stage.get("cwd")
        if cwd is not None and cwd.strip().startswith("/"):
            raise invalid(f"'build_stages[{index}].cwd' must be relative")
        for pattern in stage.get("exclude", []):
            _relative_path(pattern, f"build_stages[{index}].exclude")
