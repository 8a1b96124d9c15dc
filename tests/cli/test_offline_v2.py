"""`tako backups verify` and `extract` read a downloaded format-2 archive like a format-1 one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

from tako_backups.core.pipeline import backup
from tako_backups.models import ALGORITHM_V2
from tako_backups.project.backup_keys import backup_keys_for, ensure_backup_keys
from tako_backups.project.secrets import load_secrets
from tako_backups.project.tako_toml import load_project
from tako_backups.storage.memory import MemoryStore
from tests.cli.test_offline import _data_root


@pytest.fixture
def archive(app_dir: Path, tmp_path: Path) -> tuple[Path, str]:
    project = load_project(app_dir / "tako.toml")
    secrets = load_secrets(project.secrets_path)
    ensure_backup_keys(project, secrets, "production")
    key = backup_keys_for(load_secrets(project.secrets_path), "production")[-1]
    store = MemoryStore()
    info = backup(store, data_root=_data_root(tmp_path), work_root=tmp_path / "w", app="demo",
                  env="production", server="la-1", key=key, retention_days=30, archive_format=2).info
    assert info.encryption.algorithm == ALGORITHM_V2
    path = tmp_path / f"{info.id}.tar.zst.enc"
    path.write_bytes(store.objects[info.archive_key])
    path.with_name(path.name + ".json").write_bytes(info.to_json())
    return path, info.id


def test_verify_and_extract_a_format_2_archive(archive: tuple[Path, str], tmp_path: Path,
                                               tako: Callable[..., Result]) -> None:
    path, backup_id = archive
    result = tako("backups", "verify", str(path), "--env", "production")
    assert result.exit_code == 0, result.output
    assert f"Verified {backup_id}: checksum, tag and 1 SQLite integrity checks ok" in result.output
    into = tmp_path / "out"
    result = tako("backups", "extract", str(path), "--env", "production", "--into", str(into))
    assert result.exit_code == 0, result.output
    assert (into / "app" / "uploads" / "a.txt").read_text() == "hello"


def test_a_damaged_format_2_archive_is_refused_and_nothing_extracted(
        archive: tuple[Path, str], tmp_path: Path, tako: Callable[..., Result]) -> None:
    path, backup_id = archive
    data = bytearray(path.read_bytes())
    data[60] ^= 1  # inside chunk 0
    path.write_bytes(bytes(data))
    into = tmp_path / "out"
    result = tako("backups", "extract", str(path), "--env", "production", "--into", str(into))
    assert result.exit_code == 1
    assert f"error: Backup {backup_id} chunk 0 failed authentication (AES-GCM tag)" in result.output
    assert not into.exists() or not any(into.iterdir())
