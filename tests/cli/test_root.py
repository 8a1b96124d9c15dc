from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

from tako_backups.cli import COMMANDS
from tako_backups.cli.root import LazyCommand

REPO = Path(__file__).resolve().parents[2]


def test_help_lists_commands_without_importing_them_or_boto3() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from tako_backups.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert 'storages' in result.output and 'deploy' in result.output, result.output\n"
        "loaded = [m for m in ('boto3', 'botocore', 'tako_backups.cli.storages', 'tako_backups.cli.deploy',"
        " 'cryptography', 'httpx') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "for group in (['storages', '--help'], ['deploy', '--help']):\n"
        "    assert CliRunner().invoke(app, group).exit_code == 0\n"
        "assert 'boto3' not in sys.modules\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"


def test_version(tako: Callable[..., Result]) -> None:
    result = tako("--version")
    assert (result.exit_code, result.stdout) == (0, "tako-backups 0.1.0\n")


@pytest.fixture
def boom(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        COMMANDS, "boom", LazyCommand("tests.cli.boom_commands", "boom_app", "Test failures.")
    )


@pytest.mark.parametrize(
    ("kind", "code", "stderr"),
    [
        ("ok", 0, ""),
        ("config", 1, "error: Broken tako.toml.\n"),
        ("interrupted", 130, "error: Stopped.\n"),
        ("ctrl-c", 130, "error: Interrupted.\n"),
        ("abort", 130, "error: Cancelled.\n"),
        ("bug", 1, "error: Unexpected ZeroDivisionError. Run again with -v for the details.\n"),
    ],
)
def test_errors_map_to_exit_codes_and_one_line(
    tako: Callable[..., Result], boom: None, kind: str, code: int, stderr: str
) -> None:
    result = tako("boom", kind)
    assert (result.exit_code, result.stderr) == (code, stderr)
    assert "Traceback" not in result.output


def test_json_failure_is_one_object_on_stdout_and_the_message_on_stderr(
    tako: Callable[..., Result], boom: None
) -> None:
    result = tako("boom", "config", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"ok": False, "error": {"message": "Broken tako.toml."}}
    assert result.stderr == "error: Broken tako.toml.\n"


def test_json_success_without_own_object_reports_the_command(tako: Callable[..., Result], boom: None) -> None:
    result = tako("--json", "boom", "ok")
    assert (result.exit_code, json.loads(result.stdout)) == (0, {"ok": True, "command": "boom"})


def test_verbose_shows_a_traceback_only_for_unexpected_errors(
    tako: Callable[..., Result], boom: None
) -> None:
    assert "ZeroDivisionError: division by zero" in tako("boom", "bug", "-v").stderr
    assert tako("boom", "config", "-v").stderr == "error: Broken tako.toml.\n"


def test_global_options_may_follow_the_command(
    tako: Callable[..., Result], boom: None, tmp_path: Path
) -> None:
    result = tako("boom", "show", "--dry-run", "-c", str(tmp_path / "apps" / "web"), "--json")
    assert json.loads(result.stdout) == {
        "ok": True,
        "command": "boom",
        "dry_run": True,
        "config": str(tmp_path / "apps" / "web.toml"),
    }


def test_usage_errors_exit_2(tako: Callable[..., Result]) -> None:
    result = tako("--no-such-flag")
    assert result.exit_code == 2
    assert "No such option: --no-such-flag" in result.stderr
    json_result = tako("--json", "--no-such-flag")
    assert json.loads(json_result.stdout)["ok"] is False


def test_a_missing_command_module_is_not_listed(
    tako: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(COMMANDS, "ghost", LazyCommand("tako_backups.cli.no_such_module", "app", "Ghost."))
    assert "ghost" not in tako("--help").stdout
    assert tako("ghost").exit_code == 2


def test_module_entry_point_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tako_backups", "--version"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (0, "tako-backups 0.1.0\n")
