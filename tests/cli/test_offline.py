"""`tako backups verify` and `tako backups extract` on a downloaded archive: no server needed."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

from tako_backups.models import BackupKey
from tako_backups.project.backup_keys import backup_keys_for, ensure_backup_keys
from tako_backups.project.secrets import load_secrets
from tako_backups.project.tako_toml import load_project
from tako_backups.storage.memory import MemoryStore
from tests.support.backups import take_backup


def _data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "app" / "uploads").mkdir(parents=True)
    (root / "tako").mkdir()
    (root / "app" / "uploads" / "a.txt").write_text("hello")
    conn = sqlite3.connect(root / "app" / "app.db")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(50)])
    conn.commit()
    conn.close()
    return root


@pytest.fixture
def archive(app_dir: Path, tmp_path: Path) -> tuple[Path, str, BackupKey]:
    project = load_project(app_dir / "tako.toml")
    secrets = load_secrets(project.secrets_path)
    ensure_backup_keys(project, secrets, "production")
    key = backup_keys_for(load_secrets(project.secrets_path), "production")[-1]
    store = MemoryStore()
    info = take_backup(store, _data_root(tmp_path), key, work=tmp_path / "w", server="la-1").info
    path = tmp_path / f"{info.id}.tar.zst.enc"
    path.write_bytes(store.objects[info.archive_key])
    path.with_name(path.name + ".json").write_bytes(info.to_json())
    return path, info.id, key


def test_verify_checks_everything_and_reports(archive, tako: Callable[..., Result]) -> None:
    path, backup_id, _ = archive
    result = tako("backups", "verify", str(path), "--env", "production")
    assert result.exit_code == 0, result.output
    assert f"Verified {backup_id}: checksum, tag and 1 SQLite integrity checks ok" in result.output
    assert "2 files" in result.output


def test_verify_json(archive, tako: Callable[..., Result]) -> None:
    path, backup_id, _ = archive
    result = tako("--json", "backups", "verify", str(path), "--env", "production")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["ok"] is True and data["backup_id"] == backup_id
    assert data["sqlite_files"] == ["app/app.db"] and data["files"] == 2


def test_verify_without_manifest_says_which(archive, tako: Callable[..., Result]) -> None:
    path, _, _ = archive
    manifest = path.with_name(path.name + ".json")
    manifest.unlink()
    result = tako("backups", "verify", str(path), "--env", "production")
    assert result.exit_code == 1
    assert f"Manifest {manifest} not found; pass --manifest" in result.output


def test_verify_corrupt_file_fails_the_checksum(archive, tako: Callable[..., Result]) -> None:
    path, _, _ = archive
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    result = tako("backups", "verify", str(path), "--env", "production")
    assert result.exit_code == 1
    assert "error: Downloaded backup checksum did not match manifest." in result.output


def test_verify_truncated_file_names_the_sizes(archive, tako: Callable[..., Result]) -> None:
    path, _, _ = archive
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[:-10])
    result = tako("backups", "verify", str(path), "--env", "production")
    assert result.exit_code == 1
    assert f"is {size - 10} bytes but its manifest says {size}" in result.output


def test_verify_with_an_unknown_key_names_it(archive, tako: Callable[..., Result]) -> None:
    path, backup_id, key = archive
    manifest = path.with_name(path.name + ".json")
    doc = json.loads(manifest.read_text())
    doc["encryption"]["key_id"] = "backup-key-00000000deadbeef"
    manifest.write_text(json.dumps(doc))
    result = tako("backups", "verify", str(path), "--env", "production")
    assert result.exit_code == 1
    assert (f"Backup {backup_id} was encrypted with key 'backup-key-00000000deadbeef', which is not "
            f"among the backup keys available ({key.id})") in result.output


def test_extract_refuses_a_non_empty_folder_then_replaces_with_force(
    archive, tako: Callable[..., Result], tmp_path: Path
) -> None:
    path, backup_id, _ = archive
    into = tmp_path / "restored"
    (into / "app").mkdir(parents=True)
    (into / "app" / "old.txt").write_text("old")
    result = tako("backups", "extract", str(path), "--into", str(into), "--env", "production")
    assert result.exit_code == 1
    assert f"{into} is not empty; pass --force to replace its app/ and tako/." in result.output
    assert (into / "app" / "old.txt").read_text() == "old"
    result = tako("backups", "extract", str(path), "--into", str(into), "--env", "production", "--force")
    assert result.exit_code == 0, result.output
    assert f"Extracted {backup_id} into {into}" in result.output
    assert (into / "app" / "uploads" / "a.txt").read_text() == "hello"
    assert not (into / "app" / "old.txt").exists()
    conn = sqlite3.connect(into / "app" / "app.db")
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (50,)
    conn.close()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tako-extract-")] == []


def test_extract_of_a_corrupt_archive_leaves_the_folder_alone(
    archive, tako: Callable[..., Result], tmp_path: Path
) -> None:
    path, _, _ = archive
    path.write_bytes(bytes(b ^ 0xFF for b in path.read_bytes()))
    into = tmp_path / "restored"
    result = tako("backups", "extract", str(path), "--into", str(into), "--env", "production")
    assert result.exit_code == 1
    assert not into.exists() or list(into.iterdir()) == []


# ----- one file back: extract --path and files, on format 1 and format 2 -----


@pytest.fixture(params=[1, 2])
def any_format(request: pytest.FixtureRequest, archive, tmp_path: Path) -> tuple[Path, str, int]:
    """The archive fixture (format 1), or the same data as a downloaded format-2 archive."""
    path, backup_id, key = archive
    if request.param == 1:
        return path, backup_id, 1
    from tests.support.v2_backups import put_v2_backup

    store = MemoryStore()
    info = put_v2_backup(store, _data_root(tmp_path / "v2"), key)
    out = tmp_path / f"{info.id}.tar.zst.enc"
    out.write_bytes(store.objects[info.archive_key])
    out.with_name(out.name + ".json").write_bytes(info.to_json())
    return out, info.id, 2


def test_extract_path_places_only_that_file(any_format, tako: Callable[..., Result], tmp_path: Path) -> None:
    path, backup_id, _ = any_format
    into = tmp_path / "one"
    (into / "app").mkdir(parents=True)
    (into / "app" / "mine.txt").write_text("untouched")
    result = tako("backups", "extract", str(path), "--into", str(into), "--env", "production",
                  "--path", "app/uploads/a.txt")
    assert result.exit_code == 0, result.output
    assert f"Extracted app/uploads/a.txt of {backup_id} into {into}: 1 entries" in result.output
    assert sorted(str(p.relative_to(into)) for p in into.rglob("*") if p.is_file()) == [
        "app/mine.txt", "app/uploads/a.txt"]
    assert (into / "app" / "uploads" / "a.txt").read_text() == "hello"
    again = tako("backups", "extract", str(path), "--into", str(into), "--env", "production",
                 "--path", "app/uploads/a.txt")
    assert again.exit_code == 1
    assert f"{into / 'app/uploads/a.txt'} already exists; pass --force to replace it." in again.output


def test_extract_path_that_matches_nothing_writes_nothing(any_format, tako: Callable[..., Result],
                                                          tmp_path: Path) -> None:
    path, backup_id, _ = any_format
    into = tmp_path / "none"
    result = tako("backups", "extract", str(path), "--into", str(into), "--env", "production",
                  "--path", "app/uploads/a.txt", "--path", "app/uploads/missing.png")
    assert result.exit_code == 1
    assert (f"error: Backup {backup_id} has no file or folder 'app/uploads/missing.png'; list its files "
            f"with `tako backups files {backup_id}`.") in result.output
    assert not into.exists() or not any(into.iterdir())
    assert not list(tmp_path.glob(".tako-extract-*"))


def test_files_lists_paths_sizes_and_says_what_verified(any_format, tako: Callable[..., Result]) -> None:
    path, backup_id, fmt = any_format
    result = tako("backups", "files", str(path), "--env", "production")
    assert result.exit_code == 0, result.output
    assert "app/uploads/a.txt" in result.output and "app/app.db" in result.output
    verified = ("footer authenticated" if fmt == 2 else "size, SHA-256 and AES-GCM tag verified")
    assert f"2 files in {backup_id} (format {fmt}; verified: " in result.output and verified in result.output
    data = json.loads(tako("--json", "backups", "files", str(path), "--env", "production", "--path",
                           "app/uploads").stdout.strip().splitlines()[-1])
    assert data["format"] == fmt
    assert [(f["path"], f["type"], f["size"]) for f in data["files"]] == [
        ("app/uploads", "dir", 0), ("app/uploads/a.txt", "file", 5)]


def test_files_of_a_tampered_v1_archive_lists_nothing(archive, tako: Callable[..., Result]) -> None:
    path, _, _ = archive
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    result = tako("backups", "files", str(path), "--env", "production")
    assert result.exit_code == 1
    assert "app/uploads/a.txt" not in result.output
