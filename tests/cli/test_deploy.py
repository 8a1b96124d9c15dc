from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

SERVERS = '[[servers]]\nname = "la-1"\nhost = "127.0.0.1"\nmanagement_port = 19844\n'


@pytest.fixture
def servers(tako_home: Path) -> None:
    (tako_home / "config.toml").write_text(SERVERS)


def set_backup_credentials(tako: Callable[..., Result], expires_on: str = "never") -> None:
    result = tako(
        "storages",
        "credentials",
        "backups",
        "--env",
        "production",
        "--access-key-id",
        "A",
        "--secret-access-key",
        "S",
        "--expires-on",
        expires_on,
    )
    assert result.exit_code == 0, result.output


def test_dry_run_prints_the_plan_and_contacts_nothing(
    app_dir: Path, tako: Callable[..., Result], servers: None
) -> None:
    set_backup_credentials(tako)
    before = (app_dir / ".tako" / "secrets.json").read_text()
    result = tako("deploy", "--env", "production", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Deploy (dry run)\n"
        "demo (production)\n"
        "Server la-1: 127.0.0.1 (management port 19844)\n"
        "Backups: enabled, to backups (bucket demo-backups)\n"
        "Backup key: would be created\n"
        "Dry run: nothing was built, written or contacted.\n"
    )
    assert result.stderr == ""
    assert (app_dir / ".tako" / "secrets.json").read_text() == before


def test_dry_run_json(app_dir: Path, tako: Callable[..., Result], servers: None) -> None:
    set_backup_credentials(tako, "in 5 days")
    result = tako("deploy", "--env", "production", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    date = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=5)).isoformat()
    warning = (
        f"Storage credentials for 'backups' in environment 'production' expire within 30 days on {date}. "
        "Rotate the backup storage credentials before they expire."
    )
    assert json.loads(result.stdout) == {
        "ok": True,
        "command": "deploy",
        "dry_run": True,
        "app": "demo",
        "environment": "production",
        "servers": [{"name": "la-1", "host": "127.0.0.1", "management_port": 19844}],
        "storages": {},
        "backup": {"enabled": True, "storage": "backups", "key_would_be_created": True},
        "warnings": [warning],
    }
    assert result.stderr == f"! Validation: {warning}\n"


def test_failed_storage_checks_are_all_listed_and_exit_1(app_dir: Path, tako: Callable[..., Result],
                                                          servers: None) -> None:
    text = (app_dir / "tako.toml").read_text().replace(
        'backup = { storage = "backups" }', 'backup = { storage = "backups" }\nstorages = { up = "backups", '
        'cache = "local" }')
    (app_dir / "tako.toml").write_text(text)
    (app_dir.parent / "tako-home" / "config.toml").write_text(
        SERVERS + '[[servers]]\nname = "la-2"\nhost = "127.0.0.2"\n')
    (app_dir / "tako.toml").write_text(text.replace('servers = ["la-1"]', 'servers = ["la-1", "la-2"]'))
    result = tako("deploy", "--dry-run")
    assert result.exit_code == 1
    errors = ["Storage 'up' uses S3 resource 'backups' but credentials are missing for environment "
              "'production'",
              "Storage 'cache' uses local storage in environment 'production', but local storage requires "
              "exactly one server"]
    assert result.stderr == "error: Storage errors:\n  " + "\n  ".join(errors) + "\n"
    json_result = tako("deploy", "--dry-run", "--json")
    assert json.loads(json_result.stdout)["error"]["message"] == "Storage errors:\n  " + "\n  ".join(errors)


def test_a_server_missing_from_config_toml_is_takos_error(app_dir: Path, tako: Callable[..., Result]) -> None:
    result = tako("deploy", "--dry-run")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: Server 'la-1' not found in config.toml\n"
        "tako-backups has no `tako servers add`: add a [[servers]] entry with name = \"la-1\" and its host "
        "to "
        f"{app_dir.parent / 'tako-home' / 'config.toml'}.\n")


def test_ci_deploy_prints_the_expiry_warning_under_ci_too(app_dir: Path, tako: Callable[..., Result],
                                                         servers: None) -> None:
    """Tako prints no warning under --ci; we keep it visible."""
    set_backup_credentials(tako, "in 5 days")
    result = tako("--ci", "deploy", "--env", "production", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("! Validation: Storage credentials for 'backups' in environment "
                                    "'production' expire within 30 days on ")
