"""`tako backups now | list | ls | status` against in-process tako-servers (see remote_harness)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from pathlib import Path

import httpx

from tako_backups.cli.output import format_local_time, format_size
from tako_backups.core.layout import backup_prefix
from tako_backups.models import BackupInfo
from tako_backups.project.backup_keys import backup_keys_for
from tako_backups.project.secrets import load_secrets
from tests.cli.remote_harness import ACCESS_KEY, APP, NOW, SECRET_KEY, Demo, Fleet, Tako
from tests.support.keys import make_key

HEAD = "Backups\ndemo (production)\n"
NY_DOWN = "Server 'ny' (127.0.0.1:9845) is unreachable: connection refused."


def backups_on(fleet: Fleet, server: str) -> list[BackupInfo]:
    listed = fleet.services[server].list_backups(APP)["backups"]
    return [BackupInfo.from_dict(b) for b in listed]


def key_id(folder: Path) -> str:
    return load_secrets(folder / ".tako" / "secrets.json").envs["production"].backup_keys[-1].id


def test_now_creates_the_key_and_sends_the_full_decrypted_settings(
        demo: Demo, tako: Tako) -> None:
    fleet = demo()
    result = tako("backups", "now", "--env", "production")
    assert result.exit_code == 0, result.output
    [info] = backups_on(fleet, "la")
    assert result.stdout == (f"{HEAD}Created backup key {key_id(Path.cwd())} for production.\n"
                             f"la: {info.id} ({format_size(info.size_bytes)})\n")
    assert result.stderr == ""
    [(server, body)] = fleet.requests
    secrets = load_secrets(Path.cwd() / ".tako" / "secrets.json")
    [backup_key] = backup_keys_for(secrets, "production")
    assert (server, body) == ("la", {
        "command": "backup_now", "app": APP,
        "backup": {"storage": {"provider": "s3", "bucket": "demo-backups", "endpoint": "https://s3.example.com",
                               "region": "auto", "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY,
                               "force_path_style": False},
                   "backup_keys": [{"id": backup_key.id,
                                    "key_base64": base64.b64encode(backup_key.key).decode()}],
                   "retention_days": 30}})
    fleet.clock = NOW + 60
    again = tako("backups", "now", "--env", "production")
    assert again.exit_code == 0, again.output
    newest = backups_on(fleet, "la")[0]
    assert again.stdout == f"{HEAD}la: {newest.id} ({format_size(newest.size_bytes)})\n"
    assert fleet.requests[1][1]["backup"]["backup_keys"] == body["backup"]["backup_keys"]
    for text in (result.output, again.output):
        assert SECRET_KEY not in text and backup_key.id not in text.replace(f"key {backup_key.id} for", "")


def test_env_defaults_to_production_with_a_warning(demo: Callable[..., Fleet],
                                                   tako: Tako) -> None:
    demo()
    result = tako("backups", "status")
    assert result.exit_code == 0, result.output
    assert result.stderr == "! Using production environment\n"
    assert result.stdout == f"{HEAD}la: disabled\n"


def test_now_needs_backups_enabled_for_the_env(demo: Demo, tako: Tako) -> None:
    fleet = demo()
    result = tako("backups", "now", "--env", "staging")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == ("error: Backups are not enabled for environment 'staging'. Add "
                             '`backup = { storage = "<resource>" }` under [envs.staging] in tako.toml.\n')
    assert fleet.requests == []


def test_now_dry_run_contacts_nothing_and_writes_nothing(demo: Callable[..., Fleet],
                                                         tako: Tako) -> None:
    fleet = demo("la", "ny")
    secrets = Path.cwd() / ".tako" / "secrets.json"
    before = secrets.read_bytes()
    result = tako("backups", "now", "--env", "production", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout == (f"{HEAD}Would create a backup key for production in {secrets}\n"
                             "Would create a backup on la\nWould create a backup on ny\n"
                             "Dry run: nothing was written or contacted.\n")
    assert fleet.requests == [] and secrets.read_bytes() == before


def test_now_json_prints_the_backup_infos(demo: Demo, tako: Tako) -> None:
    fleet = demo()
    result = tako("backups", "now", "--env", "production", "--json")
    assert result.exit_code == 0, result.output
    [info] = backups_on(fleet, "la")
    assert json.loads(result.stdout) == {"ok": True, "command": "backups now", "app": "demo",
                                         "environment": "production",
                                         "results": [{"server": "la", "backup": info.to_dict()}]}


def test_now_calls_every_server_at_once(demo: Demo, tako: Tako) -> None:
    fleet = demo("la", "ny")
    arrived: list[str] = []
    both = asyncio.Event()

    class Gate(httpx.AsyncBaseTransport):
        """Holds each backup_now until both servers have one: sequential calls would time out. (The
        server_info each client asks first for the server's name passes straight through.)"""

        def __init__(self, name: str, inner: httpx.AsyncBaseTransport) -> None:
            self.name, self.inner = name, inner

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if json.loads(request.content)["command"] == "server_info":
                return await self.inner.handle_async_request(request)
            arrived.append(self.name)
            if len(arrived) == 2:
                both.set()
            await asyncio.wait_for(both.wait(), timeout=5)
            return await self.inner.handle_async_request(request)

    fleet.wrap = Gate
    result = tako("backups", "now", "--env", "production")
    assert result.exit_code == 0, result.output
    assert sorted(arrived) == ["la", "ny"]
    [la], [ny] = backups_on(fleet, "la"), backups_on(fleet, "ny")
    assert result.stdout.endswith(f"la: {la.id} ({format_size(la.size_bytes)})\n"
                                  f"ny: {ny.id} ({format_size(ny.size_bytes)})\n")
    assert (la.server, ny.server) == ("la", "ny")


def test_now_fails_when_any_server_fails(demo: Demo, tako: Tako) -> None:
    fleet = demo("la", "ny")
    fleet.down.add("ny")
    result = tako("backups", "now", "--env", "production")
    assert result.exit_code == 1
    [la] = backups_on(fleet, "la")
    assert result.stdout == (f"{HEAD}Created backup key {key_id(Path.cwd())} for production.\n"
                             f"la: {la.id} ({format_size(la.size_bytes)})\n")
    assert result.stderr == f"error: {NY_DOWN}\nerror: Failed to back up 1 of 2 servers.\n"


def test_list_and_status_survive_one_server_down(demo: Demo, tako: Tako) -> None:
    fleet = demo("la", "ny")
    assert tako("backups", "now", "--env", "production", "--server", "la").exit_code == 0
    fleet.clock = NOW + 60
    assert tako("backups", "now", "--env", "production", "--server", "la").exit_code == 0
    newest, oldest = backups_on(fleet, "la")
    fleet.down.add("ny")
    listed = tako("backups", "list", "--env", "production")
    assert listed.exit_code == 0, listed.output
    assert listed.stdout == (
        f"{HEAD}la\n{newest.id} {format_local_time(NOW + 60)} {format_size(newest.size_bytes)} manual\n"
        f"{oldest.id} {format_local_time(NOW)} {format_size(oldest.size_bytes)} manual\n")
    assert listed.stderr == f"! {NY_DOWN}\n"
    status = tako("backups", "status", "--env", "production")
    assert status.exit_code == 0, status.output
    assert status.stdout == (f"{HEAD}la: enabled, last {newest.id} at {format_local_time(NOW + 60)}, "
                             f"next {format_local_time(NOW + 60 + 86_400)}, 30d retention\n")
    assert status.stderr == f"! {NY_DOWN}\n"
    as_json = json.loads(tako("backups", "ls", "--env", "production", "--json").stdout)
    assert as_json == {"ok": True, "command": "backups list", "app": "demo", "environment": "production",
                       "results": [{"server": "la", "backups": [newest.to_dict(), oldest.to_dict()]}],
                       "errors": [{"server": "ny", "message": NY_DOWN}]}


def test_list_and_status_fail_when_every_server_fails(demo: Callable[..., Fleet],
                                                      tako: Tako) -> None:
    fleet = demo("la", "ny")
    fleet.down.update({"la", "ny"})
    la_down = "Server 'la' (127.0.0.1:9844) is unreachable: connection refused."
    listed = tako("backups", "list", "--env", "production")
    assert (listed.exit_code, listed.stdout) == (1, HEAD)
    assert listed.stderr == (f"error: {la_down}\nerror: {NY_DOWN}\n"
                             "error: Failed to query backups from all target servers.\n")
    status = tako("backups", "status", "--env", "production", "--json")
    assert status.exit_code == 1
    assert json.loads(status.stdout) == {"ok": False, "error": {
        "message": "Failed to query backup status from all target servers.", "errors": [la_down, NY_DOWN]}}
    one = tako("backups", "list", "--env", "production", "--server", "la")
    assert (one.exit_code, one.stderr) == (1, f"error: {la_down}\n")


def test_list_names_servers_and_says_when_there_are_none(demo: Callable[..., Fleet],
                                                         tako: Tako) -> None:
    fleet = demo("la", "ny")
    assert tako("backups", "now", "--env", "production").exit_code == 0
    for item in list(fleet.store.list(backup_prefix("demo", "production", "ny"))):
        fleet.store.delete(item.key)
    [la] = backups_on(fleet, "la")
    listed = tako("backups", "ls", "--env", "production")
    assert listed.exit_code == 0, listed.output
    assert listed.stdout == (f"{HEAD}la\n{la.id} {format_local_time(NOW)} {format_size(la.size_bytes)} "
                             "manual\nny\nNo backups found.\n")
    status = tako("backups", "status", "--env", "production")
    assert status.stdout == (f"{HEAD}la: enabled, last {la.id} at {format_local_time(NOW)}, next "
                             f"{format_local_time(NOW + 86_400)}, 30d retention\n"
                             f"ny: enabled, no backups yet, next {format_local_time(NOW)}, 30d retention\n")
    sent = [body for _, body in fleet.requests[-4:]]
    assert [body["command"] for body in sent] == ["list_backups"] * 2 + ["backup_status"] * 2
    assert all(set(body) == {"command", "app"} for body in sent)


def test_server_errors_reach_the_user_as_one_line(demo: Demo, tako: Tako) -> None:
    demo()
    result = tako("backups", "list", "--env", "production")
    assert result.exit_code == 1
    assert result.stderr == "error: Server 'la': Backups are not configured for demo/production.\n"


def test_unauthorized_key_names_authorize_key(demo: Demo, tako: Tako,
                                             tmp_path: Path) -> None:
    stranger = make_key(tmp_path / "stranger", "stranger@elsewhere")
    demo(key_path=stranger.path)
    result = tako("backups", "status", "--env", "production")
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: Server 'la' (127.0.0.1:9844) refused every key (management auth failed; tried "
        f"{stranger.path}); add yours with tako-server authorize-key (the server's log says why it refused "
        "each; a wrong clock is one reason).\n")


def test_unknown_server_and_env_are_config_errors(demo: Demo, tako: Tako) -> None:
    demo()
    result = tako("backups", "list", "--env", "production", "--server", "tokyo")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: Server 'tokyo' not found in config.toml\n")
    result = tako("backups", "list", "--env", "qa")
    assert result.stderr == ("error: Environment 'qa' not found in tako.toml.\nDeclared: production, "
                             "staging; add an [envs.qa] table for another.\n")


def test_backups_help_loads_no_network_or_crypto_library() -> None:
    import subprocess
    import sys

    code = ("import sys\nfrom typer.testing import CliRunner\nfrom tako_backups.cli import app\n"
            "for args in (['backups', '--help'], ['backups', 'restore', '--help']):\n"
            "    assert CliRunner().invoke(app, args).exit_code == 0\n"
            "print([m for m in ('boto3', 'httpx', 'cryptography') if m in sys.modules])\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "[]\n"), done.stderr
