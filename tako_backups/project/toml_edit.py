"""Edits to ``tako.toml`` that keep every existing line, comment and key order (tomlkit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .files import write_file
from .model import Project, StorageResource
from .tako_toml import parse_toml, project_from_document


def resource_fields(resource: StorageResource) -> dict[str, Any]:
    """The keys Tako writes for an S3 resource, in Tako's order."""
    fields: dict[str, Any] = {"provider": resource.provider, "bucket": resource.bucket,
                              "endpoint": resource.endpoint, "region": resource.region,
                              "force_path_style": resource.force_path_style}
    if resource.public_base_url is not None:
        fields["public_base_url"] = resource.public_base_url
    return fields


def _child_table(parent: Any, key: str, where: str, *, super_table: bool = False) -> Any:
    import tomlkit

    if key not in parent:
        parent[key] = tomlkit.table(is_super_table=super_table)
    child = parent[key]
    if not isinstance(child, dict):
        raise ConfigError(f"Cannot edit tako.toml: {where} is not a table.")
    return child


def with_storage_binding(text: str, path: Path, env: str, binding: str, resource_name: str,
                         resource: StorageResource | None) -> tuple[str, Project]:
    """Return tako.toml text with ``[envs.<env>].storages.<binding> = <resource_name>`` set and, when
    ``resource`` is given, ``[storages.<resource_name>]`` created or updated in place.

    Every other line, comment and key keeps its place. The result is validated before it is
    returned, so a caller never writes a file Tako would reject. Raises ConfigError.
    """
    import tomlkit

    document = parse_toml(text, path)
    created: dict[str, int] = {}
    if resource is not None:
        storages = _child_table(document, "storages", "[storages]", super_table=True)
        fields = resource_fields(resource)
        if resource_name in storages:
            table = storages[resource_name]
            if not isinstance(table, dict):
                raise ConfigError(f"Cannot edit tako.toml: [storages.{resource_name}] is not a table.")
            for key in [k for k in table if k not in fields]:
                del table[key]
            for key, value in fields.items():
                table[key] = value
        else:
            table = tomlkit.table()
            for key, value in fields.items():
                table[key] = value
            storages[resource_name] = table
            created[f"[storages.{resource_name}]"] = len(fields)
    envs = _child_table(document, "envs", "[envs]", super_table=True)
    if env not in envs:
        new_env = tomlkit.table()
        new_env.add("storages", _inline_bindings({binding: resource_name}, padded=True))
        envs[env] = new_env
        created[f"[envs.{env}]"] = 1
    else:
        _bind(_child_table(envs, env, f"[envs.{env}]"), env, binding, resource_name)
    new_text = _space_out(_restore_blank_lines(text, document.as_string()), created)
    if new_text and not new_text.endswith("\n"):
        new_text += "\n"
    try:
        return new_text, project_from_document(parse_toml(new_text, path), path)
    except ConfigError as exc:
        if f"[envs.{env}]" not in created:
            raise
        raise ConfigError(f"{exc}\nWe only write a tako.toml that Tako can load: declare [envs.{env}] "
                          "with its route in tako.toml first.") from None


def _restore_blank_lines(original: str, edited: str) -> str:
    """Put back blank lines of ``original`` that tomlkit dropped while inserting keys."""
    import difflib

    old, new = original.split("\n"), edited.split("\n")
    merged: list[str] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        merged.extend(new[j1:j2])
        if tag in ("delete", "replace") and all(not line.strip() for line in old[i1:i2]):
            merged.extend(old[i1:i2])
    return "\n".join(merged)


def _space_out(text: str, created: dict[str, int]) -> str:
    """Put a blank line before and after each table this edit created (tomlkit does not)."""
    lines = text.split("\n")
    for index in range(len(lines) - 1, -1, -1):
        size = created.get(lines[index].strip())
        if size is None:
            continue
        after = index + 1 + size
        if after < len(lines) and lines[after].strip():
            lines.insert(after, "")
        if index > 0 and lines[index - 1].strip():
            lines.insert(index, "")
    return "\n".join(lines)


def _bind(env_table: Any, env: str, binding: str, resource_name: str) -> None:
    import tomlkit

    bindings = env_table.get("storages")
    if bindings is None:
        env_table["storages"] = _inline_bindings({binding: resource_name}, padded=True)
    elif not isinstance(bindings, dict):
        raise ConfigError(f"Cannot edit tako.toml: [envs.{env}].storages must be a table.")
    elif isinstance(bindings, tomlkit.items.InlineTable):
        pairs = {**{str(k): str(v) for k, v in bindings.items()}, binding: resource_name}
        replacement = _inline_bindings(pairs, padded=bindings.as_string().startswith("{ "))
        for part in ("indent", "comment_ws", "comment", "trail"):
            setattr(replacement.trivia, part, getattr(bindings.trivia, part))
        env_table["storages"] = replacement
    else:
        bindings[binding] = resource_name


def _inline_bindings(pairs: dict[str, str], *, padded: bool) -> Any:
    """An inline table ``{ binding = "resource", ... }`` (names are ``[a-z0-9_-]``, so bare keys)."""
    import tomlkit

    body = ", ".join(f'{key} = "{value}"' for key, value in pairs.items())
    text = f"{{ {body} }}" if padded and body else f"{{{body}}}"
    return tomlkit.parse(f"x = {text}")["x"]


def write_config(path: Path, text: str) -> None:
    """Write tako.toml atomically, keeping its file mode. Raises ConfigError."""
    write_file(path, text.encode("utf-8"))
