"""`tako backups verify|extract <id> --server S` read the bucket (a real SeaweedFS): a backup filed
under the server's own name (not config.toml's) is found under the env's other prefixes, and the
output says where; credentials that may not list get an error naming the prefixes tried."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tako_backups.models import BackupInfo
from tako_backups.project.backup_keys import backup_keys_for, ensure_backup_keys
from tako_backups.project.secrets import load_secrets
from tako_backups.project.tako_toml import load_project
from tako_backups.storage.s3 import S3Store
from tests.cli.remote_harness import Tako
from tests.support.backups import take_backup
from tests.support.s3_servers import SeaweedFS

ROOT = "_tako/backups/demo/production/"


@pytest.fixture
def limited_bucket(seaweedfs: SeaweedFS) -> Iterator[str]:
    yield from seaweedfs.leased_bucket("lim-")


def project(folder: Path, tako_home: Path, seaweedfs: SeaweedFS, bucket: str, tako: Tako, *,
            limited: bool) -> None:
    (folder / "tako.toml").write_text("\n".join([
        'name = "demo"', "", "[envs.production]", 'route = "demo.example.com"', 'servers = ["la", "ny"]',
        'backup = { storage = "backups" }', "", "[storages.backups]", f'bucket = "{bucket}"',
        f'endpoint = "{seaweedfs.endpoint}"', 'region = "us-east-1"', "force_path_style = true", ""]))
    (tako_home / "config.toml").write_text(
        '[servers.la]\nhost = "127.0.0.1"\n\n[servers.ny]\nhost = "127.0.0.2"\n')
    access, secret = ((seaweedfs.limited_access_key, seaweedfs.limited_secret_key) if limited
                      else (seaweedfs.access_key, seaweedfs.secret_key))
    done = tako("storages", "credentials", "backups", "--env", "production", "--access-key-id", access,
                "--secret-access-key", secret, "--expires-on", "never")
    assert done.exit_code == 0, done.output


def backups_under(folder: Path, seaweedfs: SeaweedFS, bucket: str, labels: list[str]) -> list[BackupInfo]:
    """One backup filed under each server label, as that server would (admin credentials)."""
    loaded = load_project(folder / "tako.toml")
    ensure_backup_keys(loaded, load_secrets(loaded.secrets_path), "production")
    key = backup_keys_for(load_secrets(loaded.secrets_path), "production")[-1]
    data = folder.parent / "data"
    (data / "app").mkdir(parents=True, exist_ok=True)
    (data / "tako").mkdir(exist_ok=True)
    (data / "app" / "notes.txt").write_text("kept\n")
    store = S3Store(bucket, seaweedfs.endpoint, "us-east-1", seaweedfs.access_key, seaweedfs.secret_key,
                    force_path_style=True)
    return [take_backup(store, data, key, work=folder.parent / "w", server=label).info for label in labels]


def test_a_backup_under_the_servers_own_name_is_found_and_placed(
        app_dir: Path, tako_home: Path, seaweedfs: SeaweedFS, tako: Tako, tmp_path: Path) -> None:
    bucket = seaweedfs.lease_bucket()
    try:
        project(app_dir, tako_home, seaweedfs, bucket, tako, limited=False)
        own, other = backups_under(app_dir, seaweedfs, bucket, ["La.1", "ny"])
        checked = tako("backups", "verify", own.id, "--env", "production", "--server", "la")
        assert checked.exit_code == 0, checked.output
        assert checked.stderr == (f"! Backup {own.id} is not under server 'la' ({ROOT}la/); found "
                                  f"under server 'la-1' (prefix {ROOT}la-1/).\n")
        assert checked.stdout.startswith(f"Verified {own.id}: checksum, tag and 0 SQLite integrity checks ok")
        pulled = tako("backups", "extract", other.id, "--into", str(tmp_path / "out"), "--env", "production",
                      "--server", "la")
        assert pulled.exit_code == 0, pulled.output
        assert f"found under server 'ny' (prefix {ROOT}ny/)" in pulled.stderr
        assert (tmp_path / "out" / "app" / "notes.txt").read_text() == "kept\n"
        missing = tako("backups", "verify", "b1700000000-AbCdEf12", "--env", "production", "--server", "la")
        assert (missing.exit_code, missing.stderr) == (1, (
            f"error: Backup 'b1700000000-AbCdEf12' was not found under any server prefix of {ROOT} (tried "
            f"{ROOT}la/, {ROOT}ny/, {ROOT}la-1/).\n"))
    finally:
        seaweedfs.release_bucket(bucket)


def test_without_list_permission_the_error_names_the_prefixes_tried(
        app_dir: Path, tako_home: Path, seaweedfs: SeaweedFS, limited_bucket: str, tako: Tako) -> None:
    project(app_dir, tako_home, seaweedfs, limited_bucket, tako, limited=True)
    own, other = backups_under(app_dir, seaweedfs, limited_bucket, ["La.1", "ny"])
    found = tako("backups", "verify", other.id, "--env", "production", "--server", "la")
    assert found.exit_code == 0, found.output  # the env's other server needs no listing
    refused = tako("backups", "verify", own.id, "--env", "production", "--server", "la")
    assert (refused.exit_code, refused.stderr) == (1, (
        f"error: Backup '{own.id}' was not found under {ROOT}la/, {ROOT}ny/; the other server prefixes "
        f"under {ROOT} were not searched: listing the bucket is denied to these credentials.\n"))
