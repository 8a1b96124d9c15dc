"""End to end through the `tako` CLI: real `tako-server serve` processes on 127.0.0.1, a real
SeaweedFS bucket, the notes app running, and the developer's key found in ~/.ssh.

deploy -> backups now -> list -> status -> download -> damage the live data -> restore, then two
servers in one env (one of them going down), then a key the server never authorized.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from tako_backups.cli.output import format_local_time, format_size
from tako_backups.core.verify import extract_verified
from tako_backups.models import BackupInfo
from tako_backups.project.backup_keys import backup_keys_for
from tako_backups.project.secrets import load_secrets
from tako_backups.remote.signing import FileSigner
from tests.support.developer import Developer
from tests.support.keys import make_key
from tests.support.s3_servers import SeaweedFS
from tests.support.sqlite_checks import integrity
from tests.support.tako_server import (
    APP_PYTHON,
    NOTES_APP,
    RunningServer,
    app_pids,
    notes,
    start_server,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def set_credentials(dev: Developer, seaweedfs: SeaweedFS) -> None:
    dev.set_credentials(seaweedfs.access_key, seaweedfs.secret_key)


def listed(dev: Developer, *args: str) -> dict[str, list[BackupInfo]]:
    reply = dev.json("backups", "list", "--env", "production", *args)
    return {r["server"]: [BackupInfo.from_dict(b) for b in r["backups"]] for r in reply["results"]}


def line(info: BackupInfo) -> str:
    """Tako's list line, then the reason our server recorded."""
    assert info.extras is not None
    return (f"{info.id} {format_local_time(info.created_at_unix_secs)} {format_size(info.size_bytes)} "
            f"{info.extras.reason}")


def test_deploy_backup_list_status_download_restore(dev: Developer, la: RunningServer, seaweedfs: SeaweedFS,
                                                    bucket: str, tmp_path: Path) -> None:
    dev.write_servers({"la": la})
    dev.write_project("notes", ["la"], seaweedfs, bucket, start=[APP_PYTHON, str(NOTES_APP)])
    set_credentials(dev, seaweedfs)
    live = la.data_dir / "apps" / "notes" / "production" / "data" / "app"

    deployed = dev.tako("deploy", "--env", "production", "--create-backup-key")
    assert deployed.exit_code == 0, deployed.output
    secrets = load_secrets(dev.app_dir / ".tako" / "secrets.json")
    [key] = backup_keys_for(secrets, "production")
    [first] = listed(dev)["la"]
    assert deployed.stdout == (f"Deploy\nnotes (production)\nCreated backup key {key.id} for production; "
                               f"commit "
                               ".tako/secrets.json so every deploy sends it.\n"
                               f"la: deployed, backup {first.id} ({format_size(first.size_bytes)})\n")
    assert deployed.stderr == ""
    wait_for(lambda: len(notes(live / "notes.db")) >= 25, "the deployed notes app to write rows")

    made = dev.tako("backups", "now", "--env", "production")
    assert made.exit_code == 0, made.output
    both = listed(dev)["la"]
    [info] = [b for b in both if b.id != first.id]
    assert made.stdout == f"Backups\nnotes (production)\nla: {info.id} ({format_size(info.size_bytes)})\n"
    assert (info.app, info.environment, info.server) == ("notes", "production", "la")

    shown = dev.tako("backups", "list", "--env", "production")
    assert shown.exit_code == 0, shown.output
    assert [b.id for b in both] == [b.id for b in sorted(both, key=lambda b: (b.created_at_unix_secs, b.id),
                                                         reverse=True)]
    assert shown.stdout == "Backups\nnotes (production)\n" + "".join(f"{line(b)}\n" for b in both)

    status = dev.tako_process("backups", "status")
    assert status.returncode == 0, status.stderr
    newest = both[0]
    assert status.stderr == "! Using production environment\n"
    assert status.stdout == (f"Backups\nnotes (production)\nla: enabled, last {newest.id} at "
                             f"{format_local_time(newest.created_at_unix_secs)}, next "
                             f"{format_local_time(newest.created_at_unix_secs + 86_400)}, 30d retention\n")

    fetched = dev.tako("backups", "download", info.id, "--env", "production")
    assert fetched.exit_code == 0, fetched.output
    archive = dev.app_dir / f"{info.id}.tar.zst.enc"
    assert fetched.stdout == (f"Backups\nnotes (production) from la\n"
                              f"Saved {archive.name} ({format_size(info.size_bytes)})\n")
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == info.sha256_hex
    assert json.loads((dev.app_dir / f"{archive.name}.json").read_text()) == info.to_dict()
    saved = tmp_path / "saved"
    saved.mkdir()
    with open(archive, "rb") as stream:
        extract_verified(stream, info, [key], saved)
    saved_rows = notes(saved / "app" / "notes.db")
    uploads = sorted((saved / "app" / "uploads").glob("note-*.txt"))
    assert len(saved_rows) >= 25 and uploads
    again = dev.tako("backups", "download", info.id, "--env", "production")
    assert (again.exit_code, again.stderr) == (
        1, f"error: {archive.name} already exists; remove it or pass --output with another path.\n")

    pids_before = app_pids(live)
    assert len(pids_before) == 1
    (live / "uploads" / uploads[0].name).write_text("garbage\n")
    (live / "garbage.bin").write_bytes(os.urandom(4096))

    restored = dev.tako("backups", "restore", info.id, "--env", "production", "--yes")
    assert restored.exit_code == 0, restored.output
    downtime = re.search(r"\nApp downtime: (\d+\.\d\d)s\.\n$", restored.stdout)
    assert downtime is not None, restored.stdout
    assert restored.stdout == (f"Backups\nnotes (production) on la\n"
                               f"Restored notes from {info.id} ({format_size(info.size_bytes)})\n"
                               "The data it replaced is kept on the server (24 h) and uploads as a "
                               "pre-restore backup in the background; `tako backups undo` swaps it back at "
                               "once.\n"
                               f"App downtime: {downtime[1]}s.\n")
    assert restored.stderr == ""
    pids_after = app_pids(live)
    assert len(pids_after) == 1 and not set(pids_before) & set(pids_after)
    assert not (live / "garbage.bin").exists()
    assert (live / "uploads" / uploads[0].name).read_bytes() == uploads[0].read_bytes()
    assert integrity(live / "notes.db") == "ok"
    assert notes(live / "notes.db", limit=len(saved_rows)) == saved_rows
    wait_for(lambda: len(notes(live / "notes.db")) > len(saved_rows) + 5, "the restored app to write again")
    assert app_pids(live) == pids_after

    # Offline, straight from the bucket with the env's credentials and keys (no server involved).
    checked = dev.tako("backups", "verify", info.id, "--env", "production")
    assert checked.exit_code == 0, checked.output
    assert f"Verified {info.id}: checksum, tag and 1 SQLite integrity checks ok" in checked.stdout
    pulled = dev.tako("backups", "extract", info.id, "--into", str(tmp_path / "pulled"),
                      "--env", "production")
    assert pulled.exit_code == 0, pulled.output
    assert notes(tmp_path / "pulled" / "app" / "notes.db") == saved_rows


def test_two_servers_in_one_env(dev: Developer, la: RunningServer, signer: FileSigner, seaweedfs: SeaweedFS,
                                bucket: str, tmp_path: Path) -> None:
    ny = start_server(tmp_path / "ny", signer, "ny")
    try:
        dev.write_servers({"la": la, "ny": ny})
        dev.write_project("pair", ["la", "ny"], seaweedfs, bucket)
        set_credentials(dev, seaweedfs)
        for server in (la, ny):
            live = server.data_dir / "apps" / "pair" / "production" / "data" / "app"
            live.mkdir(parents=True, exist_ok=True)
            (live / "hello.txt").write_text(f"hello from {server.data_dir.parent.name}\n")

        made = dev.tako("backups", "now", "--env", "production")
        assert made.exit_code == 0, made.output
        key_id = load_secrets(dev.app_dir / ".tako" / "secrets.json").envs["production"].backup_keys[-1].id
        found = listed(dev)
        [on_la], [on_ny] = found["la"], found["ny"]
        assert (on_la.server, on_ny.server) == ("la", "ny")
        assert made.stdout == (f"Backups\npair (production)\nCreated backup key {key_id} for production.\n"
                               f"la: {on_la.id} ({format_size(on_la.size_bytes)})\n"
                               f"ny: {on_ny.id} ({format_size(on_ny.size_bytes)})\n")

        download = dev.tako("backups", "download", on_la.id, "--env", "production")
        assert download.exit_code == 1
        assert download.stderr == "error: Pass --server to choose a backup source.\n"
        assert not list(dev.app_dir.glob("*.enc*"))

        assert ny.terminate() == 0, ny.log_tail()
        down = f"Server 'ny' (127.0.0.1:{ny.port}) is unreachable: connection refused."
        shown = dev.tako("backups", "list", "--env", "production")
        assert shown.exit_code == 0, shown.output
        assert shown.stdout == f"Backups\npair (production)\nla\n{line(on_la)}\n"
        assert shown.stderr == f"! {down}\n"

        partial = dev.tako("backups", "now", "--env", "production")
        assert partial.exit_code == 1
        [newest] = [b for b in listed(dev, "--server", "la")["la"] if b.id != on_la.id]
        assert partial.stdout == ("Backups\npair (production)\n"
                                  f"la: {newest.id} ({format_size(newest.size_bytes)})\n")
        assert partial.stderr == f"error: {down}\nerror: Failed to back up 1 of 2 servers.\n"
    finally:
        ny.terminate()


def test_unauthorized_key_is_one_line_naming_authorize_key(dev: Developer, la: RunningServer,
                                                           seaweedfs: SeaweedFS, bucket: str,
                                                           tmp_path: Path) -> None:
    stranger = make_key(tmp_path / "stranger", "stranger@elsewhere")
    dev.write_servers({"la": la}, key_path=stranger.path)
    dev.write_project("notes", ["la"], seaweedfs, bucket)
    result = dev.tako("backups", "list", "--env", "production")
    assert (result.exit_code, result.stdout) == (1, "Backups\nnotes (production)\n")
    assert result.stderr == (
        f"error: Server 'la' (127.0.0.1:{la.port}) refused every key (management auth failed; tried "
        f"{stranger.path}); add yours with tako-server authorize-key (the server's log says why it refused "
        "each; a wrong clock is one reason).\n")
    logged = la.log_path.read_text()
    assert f"(management auth failed): Key {stranger.fingerprint} is not authorized" in logged
