from __future__ import annotations

from pathlib import Path

import pytest

from tako_backups.errors import ConfigError
from tako_backups.project.model import StorageResource
from tako_backups.project.tako_toml import load_project
from tako_backups.project.toml_edit import with_storage_binding

COMMENTED = """\
# My app -- keep this header
name = "demo"   # the app name
runtime = "bun"
start = ["bun", "run", "server.ts"]

[build]
run = "bun run build" # build it

# Environments
[envs.production]
route = "demo.example.com"
servers = ["la-1"] # one server
backup = { storage = "r2" }


[envs.production.storages]
# existing binding
avatars = "r2"

[envs.staging]
route = "staging.example.com"

[storages.r2] # main bucket
provider = "s3"
bucket = "demo"  # bucket comment
endpoint = "https://acc.r2.cloudflarestorage.com"
region = "auto"

[vars]
FOO = "bar" # untouched
"""
NEW = StorageResource(name="uploads", bucket="up", endpoint="https://s3.example.com", region="auto")


def assert_keeps_every_line(original: str, edited: str) -> None:
    lines = iter(edited.splitlines())
    for line in original.splitlines():
        assert any(candidate == line for candidate in lines), f"lost or moved: {line!r}"


@pytest.mark.parametrize("env", ["production", "staging", "development"])
def test_binding_edit_keeps_every_original_line_in_order(tmp_path: Path, env: str) -> None:
    path = tmp_path / "tako.toml"
    edited, project = with_storage_binding(COMMENTED, path, env, "uploads", "uploads", NEW)
    assert_keeps_every_line(COMMENTED, edited)
    assert project.envs[env].storages["uploads"] == "uploads"
    assert project.storages["uploads"] == NEW
    assert (
        '[storages.uploads]\nprovider = "s3"\nbucket = "up"\nendpoint = "https://s3.example.com"\n'
        'region = "auto"\nforce_path_style = false\n' in edited
    )


def test_new_env_and_resource_tables_are_separated_by_blank_lines(tmp_path: Path) -> None:
    edited, _ = with_storage_binding(COMMENTED, tmp_path / "tako.toml", "development", "uploads", "uploads",
                                     NEW)
    assert '\n\n[envs.development]\nstorages = { uploads = "uploads" }\n\n' in edited
    assert "force_path_style = false\n\n[vars]" in edited


def test_a_new_env_without_a_route_is_not_written(tmp_path: Path) -> None:
    """Tako's `storages add` writes [envs.qa] with only storages, a file Tako then refuses; we refuse
    to write it."""
    with pytest.raises(ConfigError) as caught:
        with_storage_binding(COMMENTED, tmp_path / "tako.toml", "qa", "uploads", "uploads", NEW)
    assert str(caught.value) == (
        "Validation error: Environment 'qa' must define either 'route' or 'routes'\n"
        "We only write a tako.toml that Tako can load: declare [envs.qa] with its route in tako.toml first.")


def test_binding_into_an_inline_table_keeps_its_style_and_comment(tmp_path: Path) -> None:
    text = (
        '[envs.production]\nstorages = { files = "r2" }   # bindings\nroute = "a"\n'
        '[storages.r2]\nbucket = "b"\nendpoint = "https://s3.example.com"\nregion = "auto"\n'
    )
    edited, _ = with_storage_binding(text, tmp_path / "app" / "tako.toml", "production", "more", "r2", None)
    assert edited == text.replace('{ files = "r2" }', '{ files = "r2", more = "r2" }')


def test_updating_a_declared_resource_keeps_its_comments(tmp_path: Path) -> None:
    changed = StorageResource(
        name="r2", bucket="other", endpoint="https://acc.r2.cloudflarestorage.com", region="auto"
    )
    edited, project = with_storage_binding(
        COMMENTED, tmp_path / "tako.toml", "staging", "files", "r2", changed
    )
    assert '[storages.r2] # main bucket\nprovider = "s3"\nbucket = "other"  # bucket comment\n' in edited
    assert project.storages["r2"].bucket == "other"


def test_an_edit_that_breaks_a_rule_is_refused(tmp_path: Path) -> None:
    public = StorageResource(
        name="r2",
        bucket="demo",
        endpoint="https://acc.r2.cloudflarestorage.com",
        region="auto",
        public_base_url="https://cdn.example.com",
    )
    with pytest.raises(ConfigError) as caught:
        with_storage_binding(COMMENTED, tmp_path / "tako.toml", "production", "files", "r2", public)
    assert str(caught.value) == (
        "Validation error: Environment 'production' backup storage resource 'r2' must be private; remove "
        "public_base_url or use a separate private storage resource")


def test_edit_of_an_empty_file_produces_a_loadable_config(tmp_path: Path) -> None:
    path = tmp_path / "app" / "tako.toml"
    path.parent.mkdir()
    edited, _ = with_storage_binding("", path, "development", "uploads", "uploads", NEW)
    path.write_text(edited)
    assert load_project(path, extensions=False).envs["development"].storages == {"uploads": "uploads"}
    assert edited.endswith("\n")
