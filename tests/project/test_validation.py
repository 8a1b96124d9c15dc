from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tako_backups.project.secrets import EnvSecrets, Secrets, SecretValue, StorageCredentials
from tako_backups.project.servers import load_servers
from tako_backups.project.tako_toml import load_project
from tako_backups.project.validation import DeployCheckError, deploy_checks, require_deploy_checks

NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
CONFIG = """\
name = "demo"

[storages.r2]
bucket = "b"
endpoint = "https://s3.example.com"
region = "auto"

[storages.backups]
bucket = "bk"
endpoint = "https://s3.example.com"
region = "auto"

[envs.production]
servers = ["a", "b"]
storages = { uploads = "r2", cache = "local" }
backup = { storage = "backups" }
"""


def creds(expires_on: str | None = None) -> StorageCredentials:
    return StorageCredentials(SecretValue("QQ==", expires_on), SecretValue("Qg==", expires_on))


def setup(tmp_path: Path, storages: dict[str, StorageCredentials]) -> tuple[object, Secrets]:
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "tako.toml").write_text(CONFIG)
    project = load_project(folder / "tako.toml")
    secrets = Secrets(
        path=project.secrets_path,
        envs={"production": EnvSecrets(key_id="0123456789abcdef", storages=storages)},
    )
    return project, secrets


def test_every_error_is_reported_together(tmp_path: Path) -> None:
    project, secrets = setup(tmp_path, {"old": creds()})
    result = deploy_checks(project, secrets, "production", now=NOW)  # type: ignore[arg-type]
    assert result.errors == [
        "Storage 'uploads' uses S3 resource 'r2' but credentials are missing for environment 'production'",
        "Storage 'cache' uses local storage in environment 'production', but local storage requires "
        "exactly one "
        "server",
        "Backup uses S3 resource 'backups' but credentials are missing for environment 'production'",
        "Storage credentials for 'old' exist in environment 'production', but no storage binding or "
        "backup uses "
        "that resource",
    ]
    assert result.warnings == []


def test_expired_is_an_error_and_expiring_soon_a_warning(tmp_path: Path) -> None:
    project, secrets = setup(tmp_path, {"r2": creds("2026-03-10"), "backups": creds("2026-04-09")})
    result = deploy_checks(project, secrets, "production", now=NOW)  # type: ignore[arg-type]
    assert result.errors[:1] == [
        "Storage credentials for 'r2' in environment 'production' expired on 2026-03-10. Run "
        "`tako storages credentials r2 --env production` to update them."
    ]
    assert result.warnings == [
        "Storage credentials for 'backups' in environment 'production' expire within 30 days on "
        "2026-04-09. Run "
        "`tako storages credentials backups --env production` to rotate them."
    ]


def test_credentials_far_from_expiry_pass(tmp_path: Path) -> None:
    project, secrets = setup(tmp_path, {"r2": creds("2026-04-10"), "backups": creds()})
    result = deploy_checks(project, secrets, "production", now=NOW)  # type: ignore[arg-type]
    assert result.errors == [
        "Storage 'cache' uses local storage in environment 'production', but local storage "
        "requires exactly one server"
    ]
    assert result.warnings == []


def test_servers_are_checked_against_config_toml(tmp_path: Path, tako_home: Path) -> None:
    (tako_home / "config.toml").write_text('[servers.a]\nhost = "10.0.0.1"\n')
    project, secrets = setup(tmp_path, {"r2": creds(), "backups": creds()})
    result = deploy_checks(project, secrets, "production", load_servers(), now=NOW)  # type: ignore[arg-type]
    assert result.errors[0] == (
        f"Server 'b' not found in config.toml ({tako_home / 'config.toml'}). Add a "
        "[servers.b] table with its host there."
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ("staging", "Environment 'staging' is not declared in tako.toml"),
        (
            "development",
            "Environment 'development' is reserved for local development; deploy another environment.",
        ),
    ],
)
def test_undeployable_envs(tmp_path: Path, env: str, message: str) -> None:
    project, secrets = setup(tmp_path, {})
    with pytest.raises(DeployCheckError) as caught:
        require_deploy_checks(project, secrets, env, now=NOW)  # type: ignore[arg-type]
    assert caught.value.details == [message]
    assert str(caught.value) == f"Deploy checks failed for environment '{env}' (1 error)."
