"""`tako backups verify|extract <id>` read the copy's bucket (a second SeaweedFS, with credentials
from tako-backups.toml) when the primary bucket was wiped or serves a damaged archive, and say so."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tako_backups.cli import app
from tako_backups.models import BackupInfo
from tako_backups.project.backup_keys import backup_keys_for, ensure_backup_keys
from tako_backups.project.secrets import load_secrets
from tako_backups.project.tako_toml import load_project
from tako_backups.storage.s3 import S3Store
from tests.app_setup import make_app_dir, own_tako_home
from tests.policy.support import put, wipe
from tests.support.backups import take_backup
from tests.support.s3_servers import SeaweedFS

pytestmark = pytest.mark.slow


def tako(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def project(folder: Path, home: Path, primary: SeaweedFS, bucket: str, copy: SeaweedFS,
            copy_bucket: str) -> None:
    (folder / "tako.toml").write_text("\n".join([
        'name = "demo"', "", "[envs.production]", 'route = "demo.example.com"', 'servers = ["la"]',
        'backup = { storage = "backups" }', "", "[storages.backups]", f'bucket = "{bucket}"',
        f'endpoint = "{primary.endpoint}"', 'region = "us-east-1"', "force_path_style = true", "",
        "[storages.backups-copy]", f'bucket = "{copy_bucket}"', f'endpoint = "{copy.endpoint}"',
        'region = "us-east-1"', "force_path_style = true", ""]))
    (folder / "tako-backups.toml").write_text('[envs.production]\ncopy_to = "backups-copy"\n')
    (home / "config.toml").write_text('[servers.la]\nhost = "127.0.0.1"\n')
    for resource, weed in (("backups", primary), ("backups-copy", copy)):
        done = tako("storages", "credentials", resource, "--env", "production", "--access-key-id",
                    weed.access_key, "--secret-access-key", weed.secret_key, "--expires-on", "never")
        assert done.exit_code == 0, done.output


def test_verify_and_extract_read_the_copy_when_the_primary_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seaweedfs: SeaweedFS, copy_weed: SeaweedFS,
        primary_bucket: str, copy_bucket: str) -> None:
    home = own_tako_home(tmp_path, monkeypatch)
    folder = make_app_dir(tmp_path)
    monkeypatch.chdir(folder)
    project(folder, home, seaweedfs, primary_bucket, copy_weed, copy_bucket)
    loaded = load_project(folder / "tako.toml")
    ensure_backup_keys(loaded, load_secrets(loaded.secrets_path), "production")
    key = backup_keys_for(load_secrets(loaded.secrets_path), "production")[-1]
    data = tmp_path / "data"
    (data / "app").mkdir(parents=True)
    (data / "tako").mkdir()
    (data / "app" / "notes.txt").write_text("kept in two places\n")
    primary = S3Store(primary_bucket, seaweedfs.endpoint, "us-east-1", seaweedfs.access_key,
                      seaweedfs.secret_key, force_path_style=True)
    spare = S3Store(copy_bucket, copy_weed.endpoint, "us-east-1", copy_weed.access_key, copy_weed.secret_key,
                    force_path_style=True)
    result = take_backup(primary, data, key, work=tmp_path / "w", copy_to=spare)
    assert result.copy is not None and result.copy.ok
    info: BackupInfo = result.info

    fine = tako("backups", "verify", info.id, "--env", "production")
    assert fine.exit_code == 0, fine.output
    assert fine.stdout.startswith(f"Read {info.id} from the primary (bucket {primary_bucket})\n")

    archive = bytearray(primary.get_bytes(info.archive_key))
    archive[-1] ^= 1
    put(seaweedfs, primary_bucket, info.archive_key, bytes(archive))
    damaged = tako("backups", "verify", info.id, "--env", "production")
    assert damaged.exit_code == 0, damaged.output
    assert damaged.stderr == (f"! Read {info.id} from the copy (bucket {copy_bucket}): primary (bucket "
                              f"{primary_bucket}): Downloaded backup checksum did not match manifest.\n")
    assert f"Verified {info.id}: checksum, tag" in damaged.stdout

    wipe(seaweedfs, primary_bucket)
    out = tmp_path / "restored"
    pulled = tako("backups", "extract", info.id, "--into", str(out), "--env", "production")
    assert pulled.exit_code == 0, pulled.output
    assert f"Read {info.id} from the copy (bucket {copy_bucket}): primary (bucket {primary_bucket}): " in \
        pulled.stderr
    assert (out / "app" / "notes.txt").read_text() == "kept in two places\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".tako-extract-")) == []

    wipe(copy_weed, copy_bucket)
    gone = tako("backups", "verify", info.id, "--env", "production")
    assert gone.exit_code != 0
    assert "Every copy failed: primary (bucket" in gone.stderr
    assert f"copy (bucket {copy_bucket})" in gone.stderr
