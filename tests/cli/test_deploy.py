from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

SERVERS = '[servers.la-1]\nhost = "127.0.0.1"\nmanagement_port = 19844\n'


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
        "Run `tako storages credentials backups --env production` to rotate them."
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
    assert result.stderr == f"warning: Validation: {warning}\n"


def test_failed_checks_are_all_listed_and_exit_1(app_dir: Path, tako: Callable[..., Result]) -> None:
    result = tako("deploy", "--dry-run")
    assert result.exit_code == 1
    assert result.stderr == (
        "warning: Using production environment\n"
        f"error: Server 'la-1' not found in config.toml "
        f"({Path(app_dir).parent / 'tako-home' / 'config.toml'}). "
        "Add a [servers.la-1] table with its host there.\n"
        "error: Backup uses S3 resource 'backups' but credentials are missing for environment 'production'\n"
        "error: Deploy checks failed for environment 'production' (2 errors).\n"
    )
    json_result = tako("deploy", "--dry-run", "--json")
    assert json.loads(json_result.stdout)["error"]["errors"][1] == (
        "Backup uses S3 resource 'backups' but credentials are missing for environment 'production'"
    )


