"""Commands that write tako-backups.toml: `tako storages credentials <copy_to resource>` and
`tako backups notify secret`; and deploy's checks of what is there."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

from tako_backups.project.backup_settings import backup_extensions_for
from tako_backups.project.secrets import load_secrets
from tako_backups.project.tako_toml import load_project

Tako = Callable[..., Result]
COPY = '\n[storages.copy]\nbucket = "demo-copy"\nendpoint = "https://s3.other.example.com"\nregion = "auto"\n'
SETTINGS = ('# backup settings\n[envs.production]\ncopy_to = "copy"   # second bucket\n'
            '[envs.production.notify]\nwebhook = "https://hooks.example.com/tako"\n')
SECRET = "a-webhook-secret-of-32-characters"


@pytest.fixture
def with_copy(app_dir: Path) -> Path:
    with (app_dir / "tako.toml").open("a") as file:
        file.write(COPY)
    (app_dir / "tako-backups.toml").write_text(SETTINGS)
    return app_dir


def credentials(tako: Tako, resource: str, *extra: str) -> Result:
    return tako("storages", "credentials", resource, "--env", "production", "--access-key-id", "AKIA-COPY",
                "--secret-access-key", "copy-secret-value", *extra)


def test_copy_credentials_go_to_the_settings_file_not_secrets_json(with_copy: Path, tako: Tako) -> None:
    assert credentials(tako, "backups").exit_code == 0
    before = json.loads((with_copy / ".tako" / "secrets.json").read_text())
    result = credentials(tako, "copy", "--expires-on", "2031-01-31")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "✔ Updated storage credentials copy for production.\n"
        "Deploy to sync the storage credentials to your server.\n"
        "Kept in tako-backups.toml ([envs.production.secrets]): 'copy' is a backup copy target Tako does not "
        "use, and Tako's deploy refuses such credentials in secrets.json.\n")
    assert result.stderr == ""
    assert json.loads((with_copy / ".tako" / "secrets.json").read_text()) == before
    text = (with_copy / "tako-backups.toml").read_text()
    assert text.startswith(SETTINGS) and "copy-secret-value" not in text and "AKIA-COPY" not in text
    project = load_project(with_copy / "tako.toml")
    copy = backup_extensions_for(project, "production", load_secrets(project.secrets_path)).copy_binding
    assert copy is not None and (copy.bucket, copy.access_key_id, copy.secret_access_key) == (
        "demo-copy", "AKIA-COPY", "copy-secret-value")


def test_a_copy_target_with_no_credentials_fails_the_deploy(with_copy: Path, tako: Tako,
                                                            tako_home: Path) -> None:
    (tako_home / "config.toml").write_text('[[servers]]\nname = "la-1"\nhost = "127.0.0.1"\n')
    assert credentials(tako, "backups").exit_code == 0
    result = tako("deploy", "--env", "production", "--dry-run")
    assert (result.exit_code, result.stderr) == (1, (
        "error: Backup copy errors:\n  Backup copy uses S3 resource 'copy' but credentials are missing for "
        "environment 'production' in tako-backups.toml. Run `tako storages credentials copy --env "
        "production`.\n"))
    assert credentials(tako, "copy").exit_code == 0
    assert tako("deploy", "--env", "production", "--dry-run").exit_code == 0


def test_notify_secret_from_stdin(with_copy: Path, tako: Tako) -> None:
    result = tako("backups", "notify", "secret", "--env", "production", input=f"{SECRET}\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == ("✔ Stored the webhook secret of production in tako-backups.toml.\n"
                             "Deploy or run `tako backups now` to send it to your servers.\n")
    assert SECRET not in (with_copy / "tako-backups.toml").read_text()
    project = load_project(with_copy / "tako.toml")
    secrets = load_secrets(project.secrets_path)
    assert secrets.envs["production"].storages == {}  # only the key id: nothing else in secrets.json
    assert credentials(tako, "copy").exit_code == 0
    notify = backup_extensions_for(project, "production", load_secrets(project.secrets_path)).notify
    assert notify is not None and notify.webhook_secret == SECRET and notify.signed


def test_notify_secret_on_a_terminal_is_hidden(with_copy: Path, tako: Tako, terminal: None) -> None:
    result = tako("backups", "notify", "secret", "--env", "production", input=f"{SECRET}\nn\n")
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output


@pytest.mark.parametrize(("stdin", "message"), [
    ("", "No webhook secret provided on stdin."),
    ("short\n", "The webhook secret for [envs.production] of tako-backups.toml must be 16 to 1024 printable "
                "characters; generate one with `openssl rand -hex 32`."),
])
def test_notify_secret_errors(with_copy: Path, tako: Tako, stdin: str, message: str) -> None:
    before = (with_copy / "tako-backups.toml").read_text()
    result = tako("backups", "notify", "secret", "--env", "production", input=stdin)
    assert (result.exit_code, result.stderr) == (1, f"error: {message}\n")
    assert (with_copy / "tako-backups.toml").read_text() == before


def test_notify_secret_needs_a_webhook(app_dir: Path, tako: Tako) -> None:
    result = tako("backups", "notify", "secret", "--env", "production", input=f"{SECRET}\n")
    assert (result.exit_code, result.stderr) == (1, (
        "error: Environment 'production' has no webhook to sign; set notify.webhook under [envs.production] "
        "in tako-backups.toml first.\n"))
    assert not (app_dir / "tako-backups.toml").exists()
