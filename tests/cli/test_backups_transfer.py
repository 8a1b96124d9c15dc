"""`tako backups download | restore` against in-process tako-servers (see remote_harness)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tako_backups.cli.output import Output, format_size
from tako_backups.core.verify import extract_verified
from tako_backups.models import BackupInfo
from tako_backups.project.backup_keys import backup_keys_for
from tako_backups.project.secrets import load_secrets
from tests.cli.remote_harness import ACCESS_KEY, APP, Demo, Fleet, Tako

MISSING = "b1760000000-AAAAAAAA"


def backed_up(fleet: Fleet, tako: Tako, server: str = "la") -> BackupInfo:
    live = fleet.live_dir(server)
    (live / "uploads").mkdir(exist_ok=True)
    (live / "uploads" / "a.txt").write_text("first upload\n")
    (live / "big.bin").write_bytes(os.urandom(300_000))
    result = tako("backups", "now", "--env", "production", "--server", server)
    assert result.exit_code == 0, result.output
    return BackupInfo.from_dict(fleet.services[server].list_backups(APP)["backups"][0])


def safety_backup_on(fleet: Fleet, server: str) -> BackupInfo:
    """The one pre-restore backup a restore took on ``server`` (once its background upload ended)."""
    assert fleet.services[server].safety.wait(APP, 30)
    listed = [BackupInfo.from_dict(d) for d in fleet.services[server].list_backups(APP)["backups"]]
    [safety] = [b for b in listed if b.extras is not None and b.extras.reason == "pre-restore"]
    return safety


def only_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def test_download_saves_archive_and_manifest_checked(demo: Demo, tako: Tako,
                                                     tmp_path: Path) -> None:
    fleet = demo()
    info = backed_up(fleet, tako)
    result = tako("backups", "download", info.id, "--env", "production")
    assert result.exit_code == 0, result.output
    name = f"{info.id}.tar.zst.enc"
    assert result.stdout == ("Backups\ndemo (production) from la\n"
                             f"Saved {name} ({format_size(info.size_bytes)})\n")
    assert result.stderr == "" and ACCESS_KEY not in result.output
    archive = Path.cwd() / name
    assert archive.read_bytes() == fleet.store.get_bytes(info.archive_key)
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == info.sha256_hex
    assert BackupInfo.from_json((Path.cwd() / f"{name}.json").read_bytes()) == info
    keys = backup_keys_for(load_secrets(Path.cwd() / ".tako" / "secrets.json"), "production")
    extracted = tmp_path / "extracted"
    extracted.mkdir()
    with open(archive, "rb") as stream:
        extract_verified(stream, info, keys, extracted)
    assert (extracted / "app" / "uploads" / "a.txt").read_text() == "first upload\n"
    assert [body["command"] for _, body in fleet.requests[-1:]] == ["backup_download_url"]
    assert fleet.requests[-1][1] == {"command": "backup_download_url", "app": APP, "backup_id": info.id}


def test_download_refuses_to_overwrite(demo: Demo, tako: Tako) -> None:
    fleet = demo()
    info = backed_up(fleet, tako)
    target = Path.cwd() / "out" / "saved.enc"
    first = tako("backups", "download", info.id, "--env", "production", "--output", str(target), "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout) == {"ok": True, "command": "backups download", "app": "demo",
                                        "environment": "production", "server": "la", "path": str(target),
                                        "manifest_path": f"{target}.json", "backup": info.to_dict()}
    target.write_bytes(b"mine")
    calls = len(fleet.requests)
    again = tako("backups", "download", info.id, "--env", "production", "--output", str(target))
    assert again.exit_code == 1
    assert again.stderr == f"error: {target} already exists; remove it or pass --output with another path.\n"
    assert target.read_bytes() == b"mine" and len(fleet.requests) == calls
    target.unlink()
    manifest_only = tako("backups", "download", info.id, "--env", "production", "--output", str(target))
    assert manifest_only.stderr == (f"error: {target}.json already exists; remove it or pass --output with "
                                    "another path.\n")
    assert only_files(target.parent) == ["saved.enc.json"]


@pytest.mark.parametrize(("damage", "message"), [
    (lambda data: data[:100] + bytes([data[100] ^ 1]) + data[101:],
     "Downloaded backup checksum did not match manifest."),
    (lambda data: data[:-10], "Downloaded backup {id} is {short} bytes; its manifest records {size}."),
    (lambda data: data + b"x",
     "Downloaded backup {id} is larger than the {size} bytes its manifest records."),
])
def test_failed_download_leaves_no_file(demo: Demo, tako: Tako,
                                        damage: Callable[[bytes], bytes], message: str) -> None:
    fleet = demo()
    info = backed_up(fleet, tako)
    fleet.store.tamper = damage
    before = only_files(Path.cwd())
    result = tako("backups", "download", info.id, "--env", "production")
    assert result.exit_code == 1
    expected = message.format(id=info.id, short=info.size_bytes - 10, size=info.size_bytes)
    assert result.stderr == f"error: {expected}\n"
    assert only_files(Path.cwd()) == before
    assert not [p for p in Path.cwd().iterdir() if p.name.endswith(".part")]


def test_download_and_restore_need_one_server(demo: Demo, tako: Tako) -> None:
    fleet = demo("la", "ny")
    download = tako("backups", "download", MISSING, "--env", "production")
    assert (download.exit_code, download.stderr) == (1, "error: Pass --server to choose a backup source.\n")
    restore = tako("backups", "restore", MISSING, "--env", "production", "--yes")
    assert (restore.exit_code, restore.stderr) == (1, "error: Pass --server to choose where to restore.\n")
    assert fleet.requests == []


def test_unknown_and_malformed_backup_ids(demo: Demo, tako: Tako) -> None:
    fleet = demo()
    backed_up(fleet, tako)
    unknown = tako("backups", "download", MISSING, "--env", "production")
    not_found = f"error: Server 'la': Backup not found: {MISSING}\n"
    assert (unknown.exit_code, unknown.stderr) == (1, not_found)
    restore = tako("backups", "restore", MISSING, "--env", "production", "--yes")
    assert (restore.exit_code, restore.stderr) == (1, not_found)
    bad = tako("backups", "download", "../../etc/passwd", "--env", "production")
    assert bad.stderr == ("error: '../../etc/passwd' is not a backup id (expected b<unix seconds>-<8 chars>, "
                          "see `tako backups list`).\n")
    assert not list(Path.cwd().glob("*.enc*"))


def test_restore_with_yes_replaces_live_data(demo: Demo, tako: Tako) -> None:
    fleet = demo()
    info = backed_up(fleet, tako)
    live = fleet.live_dir("la")
    (live / "uploads" / "a.txt").write_text("damaged\n")
    (live / "stray.txt").write_text("not in the backup\n")
    result = tako("backups", "restore", info.id, "--env", "production", "--yes")
    assert result.exit_code == 0, result.output
    downtime = re.fullmatch(r"(?s).*\nApp downtime: (\d+\.\d\d)s\.\n", result.stdout)
    assert downtime is not None, result.stdout
    assert result.stdout == (f"Backups\ndemo (production) on la\n"
                             f"Restored demo from {info.id} ({format_size(info.size_bytes)})\n"
                             "The data it replaced is kept on the server (24 h) and uploads as a pre-restore "
                             "backup in the background; `tako backups undo` swaps it back at once.\n"
                             f"App downtime: {downtime[1]}s.\n")
    assert result.stderr == ""
    assert (live / "uploads" / "a.txt").read_text() == "first upload\n"
    assert not (live / "stray.txt").exists()
    assert safety_backup_on(fleet, "la").extras.bytes > 300_000  # the replaced tree, uploaded after the swap
    restores = [body for _server, body in fleet.requests if body["command"] == "restore_backup"]
    assert restores == [{"command": "restore_backup", "app": APP, "backup_id": info.id}]


def test_restore_without_terminal_needs_yes(demo: Demo, tako: Tako) -> None:
    fleet = demo()
    result = tako("backups", "restore", MISSING, "--env", "production")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == ("error: Restoring demo (production) on la replaces its live data; pass --yes to "
                             "confirm (there is no terminal to ask on).\n")
    assert fleet.requests == []


def test_restore_asks_on_a_terminal(demo: Demo, tako: Tako,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = demo()
    info = backed_up(fleet, tako)
    monkeypatch.setattr("tako_backups.cli.prompts.stdin_is_terminal", lambda: True)
    calls = len(fleet.requests)
    declined = tako("backups", "restore", info.id, "--env", "production", input="n\n")
    assert declined.exit_code == 130
    assert declined.stderr.startswith("This stops the app and replaces its data directory.\n"
                                      f"Restore demo in production on la from {info.id}? [y/N]")
    assert declined.stderr.endswith("error: Restore cancelled.\n")
    assert "Backups" not in declined.stdout and len(fleet.requests) == calls
    accepted = tako("backups", "restore", info.id, "--env", "production", "--json", input="y\n")
    assert accepted.exit_code == 0, accepted.output
    # CliRunner echoes the typed answer to stdout; a terminal shows it where it was typed.
    reply = json.loads(accepted.stdout.splitlines()[-1])
    kept = fleet.services["la"].safety.kept.get(APP)
    assert kept is not None
    assert reply == {
        "ok": True, "command": "backups restore", "app": "demo", "environment": "production", "server": "la",
        "backup": info.to_dict(), "safety_backup_id": None, "downtime_seconds": reply["downtime_seconds"],
        "safety_backup": {"status": "kept", "keep_hours": 24.0,
                          "drop_at_unix_secs": kept.record.drop_at_unix_secs}}
    assert safety_backup_on(fleet, "la").id == fleet.services["la"].safety.kept.get(APP).record.backup_id


def test_restore_dry_run_contacts_nothing(demo: Demo, tako: Tako) -> None:
    fleet = demo()
    result = tako("backups", "restore", MISSING, "--env", "production", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout == ("Backups\ndemo (production) on la\n"
                             f"Would restore demo (production) on la from {MISSING}\n"
                             "Dry run: nothing was restored or contacted.\n")
    assert fleet.requests == []


def test_spinner_shows_elapsed_time_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    monkeypatch.setenv("TAKO_PROGRESS", "auto")
    with Output().spinner("Restoring backup"):
        pass
    shown = screen.getvalue()
    assert "Restoring backup" in shown and "0:00:00" in shown
    quiet = Terminal()
    monkeypatch.setattr("sys.stderr", quiet)
    with Output(json_mode=True).spinner("Restoring backup"):
        pass
    assert quiet.getvalue() == ""


def test_restore_of_one_path_replaces_only_it_and_undo_brings_the_rest_back(demo: Demo, tako: Tako) -> None:
    fleet = demo()
    info = backed_up(fleet, tako)
    live = fleet.live_dir("la")
    (live / "uploads" / "a.txt").write_text("damaged\n")
    (live / "stray.txt").write_text("written after the backup\n")
    result = tako("backups", "restore", info.id, "--path", "app/uploads/a.txt", "--env", "production",
                  "--yes")
    assert result.exit_code == 0, result.output
    assert (live / "uploads" / "a.txt").read_text() == "first upload\n"
    assert (live / "stray.txt").read_text() == "written after the backup\n"  # outside the path: kept
    sent = [body for _server, body in fleet.requests
            if body["command"] in ("restore_backup", "restore_paths")]
    assert sent == [{"command": "restore_paths", "app": APP, "backup_id": info.id,
                     "paths": ["app/uploads/a.txt"]}]
    undone = tako("backups", "undo", "--env", "production", "--yes")
    assert undone.exit_code == 0, undone.output
    assert (live / "uploads" / "a.txt").read_text() == "damaged\n"
    assert (live / "stray.txt").read_text() == "written after the backup\n"


def test_restore_of_a_path_the_backup_lacks_changes_nothing(demo: Demo, tako: Tako) -> None:
    fleet = demo()
    info = backed_up(fleet, tako)
    live = fleet.live_dir("la")
    (live / "uploads" / "a.txt").write_text("damaged\n")
    result = tako("backups", "restore", info.id, "--path", "app/uploads/missing.txt", "--env", "production",
                  "--yes")
    assert result.exit_code == 1
    assert "app/uploads/missing.txt" in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert (live / "uploads" / "a.txt").read_text() == "damaged\n"
