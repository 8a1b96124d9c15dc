"""tako-backups.toml: our per-env settings, strictly parsed, their secrets encrypted with the env
key, and what the commands get from them (backup_extensions_for)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tako_backups.errors import ConfigError
from tako_backups.models import StorageBinding
from tako_backups.policy import BackupPolicy, NotifySettings
from tako_backups.project.backup_settings import (
    BackupExtensions,
    backup_extensions_for,
    copy_only_resource,
    load_backup_settings,
)
from tako_backups.project.model import Project
from tako_backups.project.secrets import (
    SecretValue,
    load_secrets,
    open_env_key,
    save_secrets,
    seal,
    set_storage_credentials,
)
from tako_backups.project.settings_edit import HEADER, copy_credential_checks, store_extension_secrets
from tako_backups.project.tako_toml import load_project

TAKO_TOML = """\
name = "demo"

[envs.production]
route = "demo.example.com"
servers = ["la"]
backup = { storage = "backups" }

[envs.staging]
route = "staging.example.com"
storages = { files = "copy" }
backup = { storage = "backups" }

[storages.backups]
bucket = "demo-backups"
endpoint = "https://s3.example.com"
region = "auto"

[storages.copy]
bucket = "demo-copy"
endpoint = "https://s3.other.example.com"
region = "eu-1"
force_path_style = true

[storages.cdn]
bucket = "demo-cdn"
endpoint = "https://s3.example.com"
region = "auto"
public_base_url = "https://cdn.example.com"
"""
SETTINGS = """\
# our settings
[envs.production]
every = "1h"                 # hourly
keep_hourly = 24
keep_daily = 30
copy_to = "copy"
format = 2

[envs.production.notify]
webhook = "https://hooks.example.com/tako"
command = ["/usr/local/bin/page-me", "--team", "ops"]
"""
WEBHOOK_SECRET = "0123456789abcdef-webhook"
NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


def project_with(app_dir: Path, settings: str | None = SETTINGS) -> Project:
    (app_dir / "tako.toml").write_text(TAKO_TOML)
    if settings is not None:
        (app_dir / "tako-backups.toml").write_text(settings)
    return load_project(app_dir / "tako.toml")


def seal_values(project: Project, env: str, values: dict[str, str], expires_on: str | None = None) -> None:
    secrets = load_secrets(project.secrets_path)
    key = open_env_key(secrets, env, create=True)
    save_secrets(secrets)
    store_extension_secrets(project, env, {name: SecretValue(seal(value, key.key), expires_on)
                                           for name, value in values.items()})


def test_no_file_means_tako_defaults(app_dir: Path) -> None:
    project = project_with(app_dir, None)
    extensions = backup_extensions_for(project, "production", load_secrets(project.secrets_path))
    assert extensions == BackupExtensions() and extensions.is_default
    assert extensions.policy == BackupPolicy() and extensions.policy.describe() == "every 24h, keeps 30 days"


def test_every_setting_decrypted_for_the_commands(app_dir: Path) -> None:
    project = project_with(app_dir)
    seal_values(project, "production", {"copy_access_key_id": "AKIA-COPY",
                                        "copy_secret_access_key": "copy-secret",
                                        "webhook_secret": WEBHOOK_SECRET})
    extensions = backup_extensions_for(project, "production", load_secrets(project.secrets_path))
    assert extensions.policy == BackupPolicy(every=3600, keep_hourly=24, keep_daily=30)
    assert extensions.notify == NotifySettings(webhook_url="https://hooks.example.com/tako",
                                               command=("/usr/local/bin/page-me", "--team", "ops"),
                                               webhook_secret=WEBHOOK_SECRET)
    assert extensions.copy_binding == StorageBinding(bucket="demo-copy", endpoint="https://s3.other.example.com",
                                                     region="eu-1", access_key_id="AKIA-COPY",
                                                     secret_access_key="copy-secret", force_path_style=True)
    assert extensions.format == 2 and not extensions.is_default
    assert backup_extensions_for(project, "staging", load_secrets(project.secrets_path)) == BackupExtensions()


def test_the_file_keeps_its_comments_and_no_value_in_clear(app_dir: Path) -> None:
    project = project_with(app_dir)
    seal_values(project, "production", {"webhook_secret": WEBHOOK_SECRET})
    text = (app_dir / "tako-backups.toml").read_text()
    assert text.startswith(SETTINGS)
    assert "\n[envs.production.secrets]\nwebhook_secret = {value = " in text
    assert WEBHOOK_SECRET not in text


def test_a_new_file_says_what_it_is(app_dir: Path) -> None:
    project = project_with(app_dir, None)
    seal_values(project, "staging", {"copy_access_key_id": "A", "copy_secret_access_key": "S"}, "2027-01-31")
    text = (app_dir / "tako-backups.toml").read_text()
    assert text.startswith(HEADER + "\n[envs.staging.secrets]\ncopy_access_key_id = {value = ")
    assert text.count('expires_on = "2027-01-31"}') == 2
    assert set(load_backup_settings(project).envs["staging"].secrets) == {"copy_access_key_id",
                                                                          "copy_secret_access_key"}


def test_copy_credentials_come_from_secrets_json_when_tako_uses_the_resource(app_dir: Path) -> None:
    project = project_with(app_dir, '[envs.staging]\ncopy_to = "copy"\n')
    secrets = load_secrets(project.secrets_path)
    key = open_env_key(secrets, "staging", create=True)
    set_storage_credentials(secrets, "staging", "copy", key, "AKIA-BOUND", "bound-secret", None)
    save_secrets(secrets)
    settings = load_backup_settings(project)
    assert not copy_only_resource(project, settings, "staging", "copy")
    binding = backup_extensions_for(project, "staging", load_secrets(project.secrets_path)).copy_binding
    assert binding is not None and (binding.access_key_id, binding.secret_access_key) == ("AKIA-BOUND",
                                                                                          "bound-secret")


def test_missing_copy_credentials_are_reported(app_dir: Path) -> None:
    project = project_with(app_dir, '[envs.production]\ncopy_to = "copy"\n')
    settings = load_backup_settings(project)
    assert copy_only_resource(project, settings, "production", "copy")
    with pytest.raises(ConfigError) as caught:
        backup_extensions_for(project, "production", load_secrets(project.secrets_path))
    assert str(caught.value) == ("Backup copy to 'copy' has no credentials for environment 'production'. Run "
                                 "`tako storages credentials copy --env production`.")
    assert copy_credential_checks(project, settings, "production").errors == [
        "Backup copy uses S3 resource 'copy' but credentials are missing for environment 'production' in "
        "tako-backups.toml. Run `tako storages credentials copy --env production`."]


@pytest.mark.parametrize(("expires_on", "errors", "warnings"), [
    ("2026-03-10", ["Backup copy credentials for 'copy' in environment 'production' expired on 2026-03-10. "
                    "Run `tako storages credentials copy --env production` to update them."], []),
    ("2026-04-01", [], ["Backup copy credentials for 'copy' in environment 'production' expire within 30 "
                        "days "
                        "on 2026-04-01. Run `tako storages credentials copy --env production` to rotate "
                        "them."]),
    ("2026-06-01", [], []),
])
def test_copy_credential_expiry(app_dir: Path, expires_on: str, errors: list[str],
                                warnings: list[str]) -> None:
    project = project_with(app_dir, '[envs.production]\ncopy_to = "copy"\n')
    seal_values(project, "production", {"copy_access_key_id": "A", "copy_secret_access_key": "S"}, expires_on)
    result = copy_credential_checks(project, load_backup_settings(project), "production", NOW)
    assert (result.errors, result.warnings) == (errors, warnings)


def test_a_wrong_env_key_is_reported_without_values(app_dir: Path, tako_home: Path) -> None:
    project = project_with(app_dir)
    seal_values(project, "production", {"webhook_secret": WEBHOOK_SECRET})
    key_id = load_secrets(project.secrets_path).envs["production"].key_id
    (tako_home / "keys" / key_id).write_text("A" * 43 + "=")
    with pytest.raises(ConfigError) as caught:
        backup_extensions_for(project, "production", load_secrets(project.secrets_path))
    assert WEBHOOK_SECRET not in str(caught.value)
    assert str(caught.value).startswith("Cannot decrypt the webhook secret of environment 'production'")


@pytest.mark.parametrize(("text", "message"), [
    ('every = "1h"\n', "Unknown key 'every' in {path}; settings go under [envs.<env>]."),
    ('[envs.production]\nretention = 7\n', "Unknown key 'retention' in [envs.production] of "
     "tako-backups.toml; "
     "the keys are every, retention_days, keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, "
     "copy_to, format, notify, secrets."),
    ('[envs.qa]\nevery = "1h"\n', "Environment 'qa' in {path} is not declared in tako.toml; add [envs.qa] "
     "there or remove it here."),
    ('[envs.production]\nevery = "5m"\n', "`every` in [envs.production] of tako-backups.toml must be a "
     "duration between 15m and 24h, written like 15m, 1h, 90m or 24h, not '5m'."),
    ('[envs.production]\nformat = 3\n', "`format` in [envs.production] of tako-backups.toml must be 1 or 2 "
     "(2 forces archive format 2); leave it out for the default."),
    ('[envs.production]\ncopy_to = "nope"\n', "`copy_to` in [envs.production] of tako-backups.toml names "
     "'nope', which is not declared in tako.toml; add [storages.nope] there."),
    ('[envs.production]\ncopy_to = "cdn"\n', "`copy_to` in [envs.production] of tako-backups.toml names "
     "'cdn', which has a public_base_url; backup copies need a private storage resource."),
    ('[envs.production]\ncopy_to = "backups"\n', "`copy_to` in [envs.production] of tako-backups.toml names "
     "'backups', the env's own backup storage; name another storage resource."),
    ('[envs.production.notify]\nwebhook = "http://hooks.example.com"\n',
     "`notify.webhook` for [envs.production] "
     "of tako-backups.toml must use https:// (http:// is allowed only for loopback hosts such as "
                                                                         "127.0.0.1)."),
    ('[envs.production.secrets]\nwebhook_secret = { value = "QQ==" }\n', "The webhook secret for "
     "[envs.production] of tako-backups.toml is set but there is no notify.webhook; add one or remove the "
     "secret."),
    ('[envs.production.secrets]\ntoken = { value = "QQ==" }\n', "Unknown secret 'token' in [envs.production] "
     "of tako-backups.toml; the secrets are copy_access_key_id, copy_secret_access_key, webhook_secret."),
    ('[envs.production.secrets]\nwebhook_secret = { value = "QQ==", note = "x" }\n',
     "{path} is not a valid tako-backups settings file: [envs.production.secrets] webhook_secret has "
     "unknown field 'note'."),
    ('[envs.production.secrets]\ncopy_access_key_id = { value = "QQ==" }\n', "[envs.production] of "
     "tako-backups.toml has only one of copy_access_key_id and copy_secret_access_key; run `tako storages "
     "credentials <copy_to resource>` to set both."),
])
def test_strict_parsing_names_the_key_and_the_file(app_dir: Path, text: str, message: str) -> None:
    project = project_with(app_dir, text)
    with pytest.raises(ConfigError) as caught:
        load_backup_settings(project)
    assert str(caught.value) == message.format(path=app_dir / "tako-backups.toml")


def test_a_store_that_would_break_the_file_writes_nothing(app_dir: Path) -> None:
    project = project_with(app_dir, '[envs.production]\nevery = "1h"\n')
    before = (app_dir / "tako-backups.toml").read_text()
    with pytest.raises(ConfigError):
        store_extension_secrets(project, "production", {"webhook_secret": SecretValue("QQ==")})
    assert (app_dir / "tako-backups.toml").read_text() == before
