"""`tako deploy` past the checks: the deploy RPC on every server, against in-process tako-servers."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import pytest

from tako_backups.cli.output import format_size
from tako_backups.project.backup_keys import backup_keys_for
from tako_backups.project.secrets import load_secrets
from tests.cli.remote_harness import ACCESS_KEY, APP, SECRET_KEY, Demo, Fleet, Tako

HEAD = "Deploy\ndemo (production)\n"


def created(fleet: Fleet, server: str) -> tuple[str, int]:
    [info] = fleet.services[server].list_backups(APP)["backups"]
    return info["id"], info["size_bytes"]


def key_id() -> str:
    return load_secrets(Path.cwd() / ".tako" / "secrets.json").envs["production"].backup_keys[-1].id


def created_key() -> str:
    return (f"Created backup key {key_id()} for production; commit .tako/secrets.json so every deploy "
            "sends it.\n")


def test_deploy_sends_settings_and_runtime_and_prints_the_post_deploy_backup(demo: Demo, tako: Tako) -> None:
    fleet = demo(start='["python3", "-u", "my app.py", "--port", "8080"]')
    result = tako("deploy", "--env", "production", "--create-backup-key")
    assert result.exit_code == 0, result.output
    backup_id, size = created(fleet, "la")
    assert result.stdout == (f"{HEAD}{created_key()}"
                             f"la: deployed, backup {backup_id} ({format_size(size)})\n")
    assert result.stderr == ""
    [(server, body)] = fleet.requests
    [backup_key] = backup_keys_for(load_secrets(Path.cwd() / ".tako" / "secrets.json"), "production")
    assert (server, body) == ("la", {
        "command": "deploy", "app": APP,
        "backup": {"storage": {"provider": "s3", "bucket": "demo-backups", "endpoint": "https://s3.example.com",
                               "region": "auto", "access_key_id": ACCESS_KEY,
                               "secret_access_key": SECRET_KEY, "force_path_style": False},
                   "backup_keys": [{"id": backup_key.id,
                                    "key_base64": base64.b64encode(backup_key.key).decode()}],
                   "retention_days": 30},
        "runtime": {"start": ["python3", "-u", "my app.py", "--port", "8080"], "instances": 1}})
    assert SECRET_KEY not in result.output
    state = fleet.services["la"].state.load(APP)
    assert state is not None and state.runtime is not None
    assert state.runtime.start == ("python3", "-u", "my app.py", "--port", "8080")


def test_deploy_without_backups_or_start(demo: Demo, tako: Tako, tako_home: Path) -> None:
    fleet = demo(backup=False)
    (Path.cwd() / ".tako" / "secrets.json").unlink()
    result = tako("deploy", "--env", "production", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "ok": True, "command": "deploy", "dry_run": False, "app": "demo", "environment": "production",
        "results": [{"server": "la", "result": {"status": "finalized", "backup": {"status": "disabled"}}}],
        "warnings": []}
    assert fleet.requests == [("la", {"command": "deploy", "app": APP, "backup": None, "runtime": None})]
    text = tako("deploy", "--env", "production")
    assert text.stdout == f"{HEAD}la: deployed, backups disabled\n"


def test_failed_post_deploy_backup_is_reported_not_fatal(demo: Demo, tako: Tako) -> None:
    fleet = demo(start=f'["{sys.executable}", "app.py"]')
    fleet.store.fail_writes = True
    result = tako("deploy", "--env", "production", "--create-backup-key")
    assert result.exit_code == 0, result.output
    assert result.stdout == (f"{HEAD}{created_key()}"
                             "la: deployed, backup failed: Upload failed: the bucket is read-only.\n")
    assert fleet.requests[0][1]["runtime"] == {"start": [sys.executable, "app.py"], "instances": 1}


def test_deploy_fails_when_a_server_fails(demo: Demo, tako: Tako) -> None:
    fleet = demo("la", "ny")
    fleet.down.add("ny")
    result = tako("deploy", "--env", "production", "--create-backup-key")
    assert result.exit_code == 1
    backup_id, size = created(fleet, "la")
    assert result.stdout == (f"{HEAD}{created_key()}"
                             f"la: deployed, backup {backup_id} ({format_size(size)})\n")
    assert result.stderr == ("error: Server 'ny' (127.0.0.1:9845) is unreachable: connection refused.\n"
                             "error: Deploy failed on 1 of 2 servers.\n")
    fleet.down.add("la")
    alone = tako("deploy", "--env", "production")
    assert (alone.exit_code, alone.stdout) == (1, HEAD)
    assert alone.stderr.startswith("error: Server 'la' (127.0.0.1:9844) is unreachable")


def test_production_deploy_asks_on_a_terminal_unless_env_or_yes_given(
        demo: Demo, tako: Tako, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = demo()
    monkeypatch.setattr("tako_backups.cli.prompts.stdin_is_terminal", lambda: True)
    declined = tako("deploy", input="n\n")
    assert declined.exit_code == 130
    assert declined.stderr.startswith("! You are deploying to production.\n"
                                      "Pass --yes/-y to skip this prompt.\n"
                                      "Deploy to production now? [y/N]")
    assert declined.stderr.endswith("error: Deployment cancelled.\n")
    assert fleet.requests == [] and "backup_keys" not in (Path.cwd() / ".tako" / "secrets.json").read_text()
    for args in (["--yes"], ["--env", "production"]):
        result = tako("deploy", *args)
        assert result.exit_code == 0, result.output
        assert "You are deploying" not in result.stderr
    assert [command for _, command in fleet.commands()] == ["deploy", "deploy"]


def test_deploy_dry_run_still_contacts_nothing(demo: Demo, tako: Tako) -> None:
    fleet = demo()
    result = tako("deploy", "--env", "production", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Deploy (dry run)\n")
    assert fleet.requests == []


def test_start_is_takos_array(tmp_path: Path) -> None:
    from tako_backups.project.tako_toml import load_project

    (tmp_path / "tako.toml").write_text('name = "demo"\nstart = ["python3", "-m", "app"]\n')
    assert load_project(tmp_path / "tako.toml").start == ("python3", "-m", "app")


@pytest.mark.parametrize(("value", "message"), [
    ("7", "Validation error: 'start' must be a non-empty array of strings"),
    ('["python3", 1]', "Validation error: 'start' must be a non-empty array of strings"),
    ("[]", "Validation error: 'start' must be a non-empty array of strings"),
    ('["python3", ""]', "Validation error: 'start' entries cannot be empty"),
    ('"node server.js"', "Validation error: 'start' must be a non-empty array of strings\n"
                         'Write the command as an array, e.g. start = ["python", "app.py"].'),
    ('["python3", "a\\u0000b"]', "tako.toml key 'start' contains a NUL character."),
])
def test_bad_start_is_takos_error(tmp_path: Path, value: str, message: str) -> None:
    from tako_backups.errors import ConfigError
    from tako_backups.project.tako_toml import load_project

    (tmp_path / "tako.toml").write_text(f'name = "demo"\nstart = {value}\n')
    with pytest.raises(ConfigError) as failure:
        load_project(tmp_path / "tako.toml")
    assert str(failure.value) == message


def test_a_deploy_without_a_terminal_does_not_make_the_first_backup_key(demo: Demo, tako: Tako) -> None:
    """In CI a new backup key would live only in the runner's checkout: refused unless asked for."""
    fleet = demo()
    before = (Path.cwd() / ".tako" / "secrets.json").read_text()
    refused = tako("deploy", "--env", "production")
    assert refused.exit_code == 1
    assert refused.stderr == (
        "error: Backups are enabled for production, but .tako/secrets.json has no backup key yet, and this "
        "deploy has no terminal to confirm making one.\n"
        "A key made here would exist only in this checkout: unless .tako/secrets.json is committed back, the "
        "next run makes another one and older backups can no longer be restored.\n"
        "Run `tako backups now --env production` (or deploy) where you keep the project, commit "
        ".tako/secrets.json, and deploy again; or pass --create-backup-key and commit the file after.\n")
    assert fleet.requests == [] and (Path.cwd() / ".tako" / "secrets.json").read_text() == before
    assert tako("deploy", "--env", "production", "--create-backup-key").exit_code == 0
    again = tako("deploy", "--env", "production")  # the key exists now: nothing to refuse
    assert again.exit_code == 0, again.output
    assert [command for _, command in fleet.commands()] == ["deploy", "deploy"]
