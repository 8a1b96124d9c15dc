from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tako_backups.errors import ConfigError
from tako_backups.models import BackupBinding
from tako_backups.primitives.names import is_backup_key_id
from tako_backups.project.backup_keys import (
    backup_binding_for,
    backup_keys_for,
    ensure_backup_keys,
    needs_backup_key,
)
from tako_backups.project.secrets import load_secrets, open_env_key, set_storage_credentials
from tako_backups.project.tako_toml import load_project


def with_credentials(app_dir: Path) -> tuple[object, object]:
    project = load_project(app_dir / "tako.toml")
    secrets = load_secrets(project.secrets_path)
    key = open_env_key(secrets, "production", create=True)
    set_storage_credentials(secrets, "production", "backups", key, "AKIA-B", "secret-B", "2031-01-01")
    return project, secrets


def test_first_backup_key_is_created_once_and_saved(app_dir: Path) -> None:
    project, secrets = with_credentials(app_dir)
    assert needs_backup_key(project, secrets, "production")  # type: ignore[arg-type]
    assert ensure_backup_keys(project, secrets, "production") is True  # type: ignore[arg-type]
    assert ensure_backup_keys(project, secrets, "production") is False  # type: ignore[arg-type]
    saved = load_secrets(app_dir / ".tako" / "secrets.json").envs["production"].backup_keys
    assert len(saved) == 1 and is_backup_key_id(saved[0].id)
    keys = backup_keys_for(load_secrets(app_dir / ".tako" / "secrets.json"), "production")
    assert [k.id for k in keys] == [saved[0].id] and len(keys[0].key) == 32


def test_no_backup_key_when_backups_are_disabled(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "tako.toml").write_text('[envs.production]\nroute = "a"\n')
    project = load_project(folder / "tako.toml")
    secrets = load_secrets(project.secrets_path)
    assert ensure_backup_keys(project, secrets, "production") is False
    assert backup_binding_for(project, secrets, "production") is None
    assert not (folder / ".tako").exists()


def test_backup_binding_carries_decrypted_storage_and_every_key(app_dir: Path) -> None:
    project, secrets = with_credentials(app_dir)
    ensure_backup_keys(project, secrets, "production")  # type: ignore[arg-type]
    binding = backup_binding_for(project, secrets, "production")  # type: ignore[arg-type]
    assert isinstance(binding, BackupBinding)
    wire = binding.to_dict()
    assert wire["storage"] == {
        "provider": "s3",
        "bucket": "demo-backups",
        "endpoint": "https://s3.example.com",
        "region": "auto",
        "access_key_id": "AKIA-B",
        "secret_access_key": "secret-B",
        "force_path_style": False,
    }
    assert wire["retention_days"] == 30
    assert [k["id"] for k in wire["backup_keys"]] == [binding.active_key.id]
    assert len(base64.b64decode(wire["backup_keys"][0]["key_base64"])) == 32
    assert "secret-B" not in repr(binding)


def test_backup_binding_needs_credentials_and_a_key(app_dir: Path) -> None:
    project = load_project(app_dir / "tako.toml")
    secrets = load_secrets(project.secrets_path)
    with pytest.raises(ConfigError) as caught:
        backup_binding_for(project, secrets, "production")
    assert str(caught.value) == (
        "Missing storage credentials for resource 'backups' in environment 'production'.\n"
        "Run `tako storages credentials backups --env production`."
    )
    project, secrets = with_credentials(app_dir)
    with pytest.raises(ConfigError) as caught:
        backup_binding_for(project, secrets, "production")  # type: ignore[arg-type]
    assert str(caught.value) == (
        "Backup encryption key is missing. Deploy or run `tako backups now` to create it."
    )
