from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tako_backups.errors import ConfigError
from tako_backups.project.deploy_plan import plan_deploy
from tako_backups.project.model import Project
from tako_backups.project.secrets import EnvSecrets, Secrets, SecretValue, StorageCredentials, save_secrets
from tako_backups.project.tako_toml import load_project
from tako_backups.project.validation import DeployCheckError, require_storage_checks, storage_checks

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
route = "demo.example.com"
servers = ["a", "b"]
storages = { uploads = "r2", cache = "local" }
backup = { storage = "backups" }

[envs.staging]
route = "staging.example.com"
"""


def creds(expires_on: str | None = None) -> StorageCredentials:
    return StorageCredentials(SecretValue("QQ==", expires_on), SecretValue("Qg==", expires_on))


def setup(tmp_path: Path, storages: dict[str, StorageCredentials],
          config: str = CONFIG) -> tuple[Project, Secrets]:
    folder = tmp_path / "demo"
    folder.mkdir(exist_ok=True)
    (folder / "tako.toml").write_text(config)
    project = load_project(folder / "tako.toml")
    secrets = Secrets(
        path=project.secrets_path,
        envs={"production": EnvSecrets(key_id="0123456789abcdef", storages=storages)},
    )
    return project, secrets


def test_every_error_is_reported_together_with_takos_texts(tmp_path: Path) -> None:
    project, secrets = setup(tmp_path, {"old": creds()})
    result = storage_checks(project, secrets, "production", 2, now=NOW)
    assert result.errors == [
        "Storage 'uploads' uses S3 resource 'r2' but credentials are missing for environment 'production'",
        "Storage 'cache' uses local storage in environment 'production', but local storage requires "
        "exactly one server",
        "Backup uses S3 resource 'backups' but credentials are missing for environment 'production'",
        "Storage credentials for 'old' exist in environment 'production', but no storage binding uses "
        "that resource",
    ]
    assert result.warnings == []
    with pytest.raises(DeployCheckError) as caught:
        require_storage_checks(project, secrets, "production", 2, now=NOW)
    assert str(caught.value) == "Storage errors:\n  " + "\n  ".join(result.errors)


def test_one_server_may_use_local_storage(tmp_path: Path) -> None:
    project, secrets = setup(tmp_path, {"r2": creds(), "backups": creds()})
    assert storage_checks(project, secrets, "production", 1, now=NOW).errors == []
    assert storage_checks(project, secrets, "production", 2, now=NOW).errors == [
        "Storage 'cache' uses local storage in environment 'production', but local storage requires "
        "exactly one server"]


def test_expired_is_an_error_per_field_and_expiring_soon_one_warning_per_date(tmp_path: Path) -> None:
    expired = StorageCredentials(SecretValue("QQ==", "2026-03-10"), SecretValue("Qg==", "2026-03-01"))
    project, secrets = setup(tmp_path, {"r2": expired, "backups": creds("2026-04-09")})
    result = storage_checks(project, secrets, "production", 1, now=NOW)
    assert result.errors == [
        "Storage credentials for 'r2' in environment 'production' expired on 2026-03-10 (access key id). "
        "Run `tako storages add uploads --env production` to update them.",
        "Storage credentials for 'r2' in environment 'production' expired on 2026-03-01 (secret access key). "
        "Run `tako storages add uploads --env production` to update them.",
    ]
    assert result.warnings == [
        "Storage credentials for 'backups' in environment 'production' expire within 30 days on "
        "2026-04-09. Rotate the backup storage credentials before they expire."
    ]


def test_backup_credentials_hints(tmp_path: Path) -> None:
    project, secrets = setup(tmp_path, {"r2": creds("2026-04-09"), "backups": creds("2026-03-10")})
    result = storage_checks(project, secrets, "production", 1, now=NOW)
    assert result.errors == [
        f"Storage credentials for 'backups' in environment 'production' expired on 2026-03-10 ({field}). "
        "Update the backup storage credentials before deploying." for field in ("access key id",
                                                                                 "secret access key")]
    assert result.warnings == [
        "Storage credentials for 'r2' in environment 'production' expire within 30 days on 2026-04-09. "
        "Run `tako storages add uploads --env production` to rotate them."]


def test_credentials_far_from_expiry_pass(tmp_path: Path) -> None:
    project, secrets = setup(tmp_path, {"r2": creds("2026-04-10"), "backups": creds()})
    result = storage_checks(project, secrets, "production", 1, now=NOW)
    assert (result.errors, result.warnings) == ([], [])


def test_an_undeclared_env_fails_the_storage_checks(tmp_path: Path) -> None:
    project, secrets = setup(tmp_path, {})
    assert storage_checks(project, secrets, "qa", 1, now=NOW).errors == [
        "Environment 'qa' is not declared in tako.toml"]


def _plan_error(tmp_path: Path, tako_home: Path, env: str | None, config: str = CONFIG,
                servers: str = '[[servers]]\nname = "a"\nhost = "10.0.0.1"\n') -> str:
    project, secrets = setup(tmp_path, {"r2": creds(), "backups": creds()}, config)
    save_secrets(secrets)
    (tako_home / "config.toml").write_text(servers)
    with pytest.raises(ConfigError) as caught:
        plan_deploy(project.path, env, now=NOW)
    return str(caught.value)


@pytest.mark.parametrize(("env", "message"), [
    ("development", "Environment 'development' is reserved for local development and cannot be deployed."),
    ("qa", "Environment 'qa' not found. Available: production, staging"),
    ("production", "Server 'b' not found in config.toml\ntako-backups has no `tako servers add`: add a "
                   "[[servers]] entry with name = \"b\" and its host to {config}."),
    ("staging", "No servers configured for environment 'staging'. Add `servers = [\"<name>\"]` under "
                "[envs.staging] in tako.toml."),
])
def test_deploy_plan_refuses_as_tako(tmp_path: Path, tako_home: Path, env: str, message: str) -> None:
    expected = message.format(config=tako_home / "config.toml")
    assert _plan_error(tmp_path, tako_home, env) == expected


def test_deploy_plan_needs_a_name_and_has_no_folder_fallback(tmp_path: Path, tako_home: Path) -> None:
    assert _plan_error(tmp_path, tako_home, None, CONFIG.replace('name = "demo"\n', "")) == (
        "Could not determine app name: tako.toml must have a `name` field. Run `tako init` to set it.")


def test_deploy_plan_with_no_servers_at_all(tmp_path: Path, tako_home: Path) -> None:
    assert _plan_error(tmp_path, tako_home, "staging", servers="") == (
        "No servers have been added. Run 'tako servers add <host>' first, then add it under "
        f"[envs.staging].servers in tako.toml.\ntako-backups has no `tako servers add`: add a [[servers]] "
        f"entry with name = \"<name>\" and its host to {tako_home / 'config.toml'}.")


def test_deploy_plan_collects_storage_errors(tmp_path: Path, tako_home: Path) -> None:
    project, secrets = setup(tmp_path, {"backups": creds()})
    save_secrets(secrets)
    (tako_home / "config.toml").write_text('[[servers]]\nname = "a"\nhost = "10.0.0.1"\n'
                                           '[[servers]]\nname = "b"\nhost = "10.0.0.2"\n')
    with pytest.raises(DeployCheckError) as caught:
        plan_deploy(project.path, None, now=NOW)
    assert str(caught.value) == (
        "Storage errors:\n"
        "  Storage 'uploads' uses S3 resource 'r2' but credentials are missing for environment 'production'\n"
        "  Storage 'cache' uses local storage in environment 'production', but local storage requires "
        "exactly one server")
