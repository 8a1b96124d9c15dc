"""The CLI's recovery commands (drill, undo, reindex, preview, keys) against in-process
tako-servers with a fake clock (tests/cli/remote_harness):
overdue warnings, JSON status fields, dry runs, and what is sent on the wire."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tako_backups.cli import app
from tako_backups.cli.output import format_local_time
from tako_backups.models import BackupInfo
from tako_backups.remote.signing import FileSigner
from tests.cli.remote_harness import APP, NOW, Fleet, prepare

Tako = Callable[..., Result]
HEAD = "Backups\ndemo (production)\n"


@pytest.fixture
def tako() -> Tako:
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


@pytest.fixture
def fleet(tmp_path: Path, signer: FileSigner, tako: Tako, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    home = tmp_path / "tako-home"
    home.mkdir()
    monkeypatch.setenv("TAKO_HOME", str(home))
    monkeypatch.delenv("TAKO_SECRETS_PASSPHRASE", raising=False)
    return prepare(tmp_path, home, signer, tako, monkeypatch)


def test_status_warns_about_an_overdue_backup_and_reports_our_fields(fleet: Fleet, tako: Tako) -> None:
    assert tako("backups", "now", "--env", "production").exit_code == 0
    [info] = [BackupInfo.from_dict(b) for b in fleet.services["la"].list_backups(APP)["backups"]]
    fresh = tako("backups", "status", "--env", "production", "--json")
    assert json.loads(fresh.stdout)["results"] == [{"server": "la", "status": {
        "enabled": True, "retention_days": 30, "last_backup": info.to_dict(),
        "next_backup_at_unix_secs": NOW + 86_400, "last_drill": None, "last_ok_drill": None,
        "overdue": False, "overdue_after_seconds": 133_200, "index_rebuilt": False}}]

    fleet.clock = NOW + 37 * 3600 + 1  # every 24 h x 1.5 + 1 h
    late = tako("backups", "status", "--env", "production")
    assert late.exit_code == 0, late.output
    assert late.stdout == (f"{HEAD}la: enabled, last {info.id} at {format_local_time(NOW)}, next "
                           f"{format_local_time(NOW + 86_400)}, 30d retention\n")
    assert late.stderr == (f"! la: backup overdue: the newest ({info.id}, {format_local_time(NOW)}) "
                           "is more than 37 hours old.\n")


def test_drill_and_key_commands_send_our_commands(fleet: Fleet, tako: Tako) -> None:
    assert tako("backups", "now", "--env", "production").exit_code == 0
    drilled = tako("backups", "drill", "--env", "production", "--json")
    assert drilled.exit_code == 0, drilled.output
    [result] = json.loads(drilled.stdout)["results"]
    assert (result["server"], result["drill"]["ok"], result["drill"]["at_unix_secs"]) == ("la", True, NOW)
    assert fleet.requests[-1][1] == {"command": "drill_backup", "app": APP, "backup_id": None}

    restored = tako("backups", "restore", result["drill"]["backup_id"], "--env", "production", "--yes",
                    "--no-safety-backup")
    assert restored.exit_code == 0, restored.output
    assert fleet.requests[-1][1] == {"command": "restore_backup", "app": APP,
                                     "backup_id": result["drill"]["backup_id"], "safety_backup": False}
    calls = len(fleet.requests)
    secrets = Path.cwd() / ".tako" / "secrets.json"
    before = secrets.read_bytes()
    dry = tako("backups", "keys", "rotate", "--env", "production", "--dry-run")
    assert dry.stdout == (f"{HEAD}Would add a backup key to production in {secrets}\n"
                          "Dry run: nothing was written.\n")
    assert secrets.read_bytes() == before and len(fleet.requests) == calls
    undo = tako("backups", "undo", "--env", "production", "--yes")
    assert (undo.exit_code, undo.stderr) == (1, (
        "error: Server 'la': App 'demo/production' has no kept tree and no pre-restore backup to go back "
        "to: restores keep one unless --no-safety-backup is passed.\n"))
