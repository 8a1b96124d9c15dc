"""Everything we write or recommend in Tako's files loads with Tako's rules (our loaders with
``extensions=False``): every TOML example in README.md and docs/, what `tako storages add`
writes, and the demo's generated project."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tako_backups.cli import app
from tako_backups.demo.scenario import demo_files
from tako_backups.errors import ConfigError
from tako_backups.project.backup_settings import load_backup_settings
from tako_backups.project.servers import load_servers
from tako_backups.project.tako_toml import load_project

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKERS = ("# tako.toml", "# config.toml", "# tako-backups.toml")


def toml_blocks(path: Path) -> list[str]:
    """Every ```toml block of a Markdown file, dedented (blocks may sit in list items)."""
    blocks = []
    for match in re.finditer(r"^( *)```toml\n(.*?)^\1```$", path.read_text(), re.M | re.S):
        indent = len(match.group(1))
        blocks.append("".join(line[indent:] for line in match.group(2).splitlines(keepends=True)))
    return blocks


def test_the_docs_have_examples_of_each_file() -> None:
    kinds = [block.split("\n", 1)[0].split(" (")[0] for path in DOCS for block in toml_blocks(path)]
    assert set(kinds) == set(MARKERS), kinds


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_toml_example_loads_with_takos_rules(doc: Path, tmp_path: Path) -> None:
    project = None
    for index, block in enumerate(toml_blocks(doc)):
        marker = block.split("\n", 1)[0]
        assert marker.split(" (")[0] in MARKERS, f"{doc.name} block {index} must start with one of {MARKERS}"
        folder = tmp_path / f"block{index}"
        folder.mkdir()
        if marker.startswith("# config.toml"):
            (folder / "config.toml").write_text(block)
            assert len(load_servers(folder / "config.toml", extensions=False)) > 0
        elif marker.startswith("# tako.toml"):
            (folder / "tako.toml").write_text(block)
            project = load_project(folder / "tako.toml", extensions=False)
            assert project.name
        else:
            assert project is not None, f"{doc.name}: a tako-backups.toml example follows its tako.toml"
            (project.app_dir / "tako-backups.toml").write_text(block)
            assert load_backup_settings(project).envs


def strict(app_dir: Path) -> None:
    load_project(app_dir / "tako.toml", extensions=False)


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    monkeypatch.setenv("TAKO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TAKO_SECRETS_PASSPHRASE", raising=False)
    monkeypatch.chdir(tmp_path)

    def tako(*args: str) -> None:
        result = CliRunner().invoke(app, list(args))
        assert result.exit_code == 0, result.output

    return tako


def test_what_storages_add_writes_loads_in_tako(tmp_path: Path, run: Callable[..., None]) -> None:
    (tmp_path / "tako.toml").write_text('# my app\nname = "demo"\n\n[envs.production]\nroute = '
                                        '"demo.example.com"\n')
    run("storages", "add", "uploads", "--env", "production", "--bucket", "b", "--endpoint",
        "https://s3.example.com/", "--public-base-url", "https://cdn.example.com", "--access-key-id", "A",
        "--secret-access-key", "S")
    run("storages", "add", "cache", "--env", "production", "--provider", "local")
    run("storages", "add", "files", "--env", "development", "--resource", "uploads", "--access-key-id", "A",
        "--secret-access-key", "S")
    strict(tmp_path)
    project = load_project(tmp_path / "tako.toml", extensions=False)
    assert project.envs["production"].storages == {"uploads": "uploads", "cache": "local"}
    assert project.storages["uploads"].public_base_url == "https://cdn.example.com"


def test_the_demo_project_loads_in_tako_but_for_its_local_endpoint(tmp_path: Path) -> None:
    config_toml, tako_toml = demo_files("http://127.0.0.1:8333", 19844, tmp_path / "id_ed25519",
                                        ["/usr/bin/python3", "/srv/notes/app.py"])
    (tmp_path / "config.toml").write_text(config_toml)
    servers = load_servers(tmp_path / "config.toml", extensions=False)
    assert servers.entries["demo"].management_port == 19844
    (tmp_path / "tako.toml").write_text(tako_toml)
    assert load_project(tmp_path / "tako.toml").name == "notes"
    with pytest.raises(ConfigError) as caught:
        strict(tmp_path)
    assert str(caught.value) == "Validation error: 'storages.demo-s3.endpoint' must use https"
    (tmp_path / "tako.toml").write_text(tako_toml.replace("http://127.0.0.1:8333", "https://s3.example.com"))
    strict(tmp_path)
