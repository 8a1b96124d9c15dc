"""The recovery commands through the `tako` CLI: a real `tako-server serve`, a real SeaweedFS
bucket, the
developer's key in ~/.ssh. drill and status, restore --preview, the safety backup and undo,
reindex, and key rotation (rotate, reencrypt, retire)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tako_backups.cli.output import format_local_time, format_size
from tako_backups.core.layout import backup_prefix, index_key
from tako_backups.models import BackupInfo
from tako_backups.project.secrets import load_secrets
from tako_backups.remote.signing import FileSigner
from tako_backups.storage.s3 import S3Store
from tests.recovery.conftest import make_tree, sql
from tests.support.developer import Developer, enter_developer
from tests.support.s3_servers import SeaweedFS
from tests.support.tako_server import RunningServer, running_server
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

HEAD = "Backups\n{app} (production)\n"


@pytest.fixture(scope="module")
def la(tmp_path_factory: pytest.TempPathFactory, signer: FileSigner) -> Iterator[RunningServer]:
    yield from running_server(tmp_path_factory.mktemp("la") / "tako", signer)


@pytest.fixture(scope="module")
def bucket(seaweedfs: SeaweedFS) -> Iterator[str]:
    yield from seaweedfs.leased_bucket()


@pytest.fixture
def dev(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> Developer:
    return enter_developer(tmp_path, home, monkeypatch)


def project(dev: Developer, la: RunningServer, seaweedfs: SeaweedFS, bucket: str, name: str) -> Path:
    """Write tako.toml and config.toml, set credentials, deploy (no process), fill the live tree
    and take a backup; returns the live data folder."""
    dev.write_servers({"la": la})
    dev.write_project(name, ["la"], seaweedfs, bucket)
    creds = dev.tako("storages", "credentials", "backups", "--env", "production", "--access-key-id",
                     seaweedfs.access_key, "--secret-access-key", seaweedfs.secret_key,
                     "--expires-on", "never")
    assert creds.exit_code == 0, creds.output
    deployed = dev.tako("deploy", "--env", "production", "--create-backup-key")
    assert deployed.exit_code == 0, deployed.output
    live = la.data_dir / "apps" / name / "production" / "data"
    make_tree(live)
    made = dev.tako("backups", "now", "--env", "production")
    assert made.exit_code == 0, made.output
    return live


def newest(dev: Developer) -> BackupInfo:
    [result] = dev.json("backups", "list", "--env", "production")["results"]
    return BackupInfo.from_dict(result["backups"][0])


def full_backup(dev: Developer) -> BackupInfo:
    """The backup of the test tree (not the empty post-deploy one, which may share its second)."""
    [full] = [b for b in backups(dev) if b.extras is not None and b.extras.files == 4]
    return full


def backups(dev: Developer) -> list[BackupInfo]:
    [result] = dev.json("backups", "list", "--env", "production")["results"]
    return [BackupInfo.from_dict(b) for b in result["backups"]]


def test_drill_and_status_show_the_last_verified_restore(dev: Developer, la: RunningServer,
                                                         seaweedfs: SeaweedFS, bucket: str) -> None:
    project(dev, la, seaweedfs, bucket, "drilled")
    info = newest(dev)
    drilled = dev.tako("backups", "drill", "--env", "production")
    assert drilled.exit_code == 0, drilled.output
    match = re.fullmatch(re.escape(HEAD.format(app="drilled") + f"la: {info.id} restorable (")
                         + r"(\d+\.\d)s recovery\)\n", drilled.stdout)
    assert match, drilled.stdout
    [status] = dev.json("backups", "status", "--env", "production")["results"]
    drill = status["status"]["last_ok_drill"]
    assert (drill["backup_id"], f"{drill['seconds']:.1f}") == (info.id, match.group(1))
    shown = dev.tako("backups", "status", "--env", "production")
    assert shown.exit_code == 0 and shown.stderr == ""
    assert shown.stdout.endswith(f"la: last verified restorable {format_local_time(drill['at_unix_secs'])} "
                                 f"({match.group(1)}s recovery)\n")

    store = S3Store(bucket, seaweedfs.endpoint, "us-east-1", seaweedfs.access_key, seaweedfs.secret_key,
                    force_path_style=True)
    store.put_bytes(info.archive_key, store.get_bytes(info.archive_key)[:-1] + b"!")
    failed = dev.tako("backups", "drill", info.id, "--env", "production")
    assert failed.exit_code == 1
    assert failed.stdout == (HEAD.format(app="drilled") + f"la: {info.id} failed the drill: "
                             "Downloaded backup checksum did not match manifest.\n")
    assert failed.stderr == "error: The restore drill failed on 1 of 1 servers.\n"
    [status] = dev.json("backups", "status", "--env", "production")["results"]
    at = format_local_time(status["status"]["last_drill"]["at_unix_secs"])
    warned = dev.tako("backups", "status", "--env", "production")
    assert warned.exit_code == 0
    assert warned.stderr == (f"! la: the last restore drill ({info.id}, {at}) failed: "
                             "Downloaded backup checksum did not match manifest.\n")
    assert "la: last verified restorable" in warned.stdout  # the earlier drill still stands
    bad_id = dev.tako("backups", "drill", "nonsense", "--env", "production")
    assert (bad_id.exit_code, bad_id.stderr) == (1, "error: 'nonsense' is not a backup id (expected b<unix "
                                                    "seconds>-<8 chars>, see `tako backups list`).\n")


def test_preview_restore_undo(dev: Developer, la: RunningServer, seaweedfs: SeaweedFS, bucket: str) -> None:
    live = project(dev, la, seaweedfs, bucket, "undone")
    info = full_backup(dev)
    sql(live / "app" / "notes.db", "DELETE FROM notes WHERE id > 30")
    (live / "app" / "stray.txt").write_text("not in the backup\n")
    head = "Backups\nundone (production) on la\n"

    preview = dev.tako("backups", "restore", info.id, "--preview", "--env", "production")
    assert preview.exit_code == 0, preview.output
    db = live / "app" / "notes.db"
    assert info.extras is not None
    assert preview.stdout == (head + f"Restoring {info.id} would add 0 files, remove 1 file and change "
                              "1 file (3 unchanged):\n"
                              "- app/stray.txt (18 bytes)\n"
                              f"~ app/notes.db ({format_size(db.stat().st_size)} -> "
                              f"{format_size(_snapshot_size(preview_json(dev, info.id)))})\n"
                              "app/notes.db: notes 30 -> 40 rows (+10)\n"
                              "Preview only: nothing was restored.\n")
    assert (live / "app" / "stray.txt").exists()

    restored = dev.tako("backups", "restore", info.id, "--yes", "--env", "production", "--keep-previous", "2")
    assert restored.exit_code == 0, restored.output
    downtime = re.search(r"\nApp downtime: (\d+\.\d\d)s\.\n$", restored.stdout)
    assert downtime is not None, restored.stdout
    assert restored.stdout == (head + f"Restored undone from {info.id} ({format_size(info.size_bytes)})\n"
                               "The data it replaced is kept on the server (2 h) and uploads as a "
                               "pre-restore backup in the background; `tako backups undo` swaps it back at "
                               "once.\n"
                               f"App downtime: {downtime[1]}s.\n")
    assert not (live / "app" / "stray.txt").exists()
    status = dev.tako("backups", "status", "--env", "production")
    assert "la: the data the last restore replaced is kept until " in status.stdout

    no_terminal = dev.tako("backups", "undo", "--env", "production")
    assert (no_terminal.exit_code, no_terminal.stderr) == (1, (
        "error: Undoing the last restore of undone (production) on la replaces its live data; pass --yes to "
        "confirm (there is no terminal to ask on).\n"))
    undone = dev.tako("backups", "undo", "--yes", "--env", "production", "--json")
    assert undone.exit_code == 0, undone.output
    reply = json.loads(undone.stdout)  # the kept tree was swapped back: nothing came from the bucket
    assert (reply["source"], reply["backup"], reply["safety_backup"]["status"]) == ("kept", None, "kept")
    assert (live / "app" / "stray.txt").read_text() == "not in the backup\n"
    text = dev.tako("backups", "undo", "--yes", "--env", "production")  # and back again, in text
    assert text.exit_code == 0, text.output
    assert text.stdout.startswith(
        head + "Swapped back the data the last restore of undone replaced (kept at ")
    assert not (live / "app" / "stray.txt").exists()
    wait_for(lambda: "in the bucket as" in dev.tako("backups", "status", "--env", "production").stdout,
             "the kept tree to be in the bucket")

    count = len(backups(dev))
    plain = dev.tako("backups", "restore", info.id, "--yes", "--no-safety-backup", "--env", "production")
    assert plain.exit_code == 0, plain.output
    assert plain.stdout.startswith(head + f"Restored undone from {info.id} ({format_size(info.size_bytes)})\n"
                                   "App downtime: ")
    assert len(backups(dev)) == count and not (live / "app" / "stray.txt").exists()


def preview_json(dev: Developer, backup_id: str) -> dict[str, object]:
    return dev.json("backups", "restore", backup_id, "--preview", "--env", "production")["preview"]  # type: ignore


def _snapshot_size(preview: dict[str, object]) -> int:
    [notes_db] = [c for c in preview["changed"] if c["path"] == "app/notes.db"]  # type: ignore[attr-defined]
    return int(notes_db["size_after"])


def test_reindex_and_the_list_note(dev: Developer, la: RunningServer, seaweedfs: SeaweedFS,
                                   bucket: str) -> None:
    project(dev, la, seaweedfs, bucket, "indexed")
    every = backups(dev)
    store = S3Store(bucket, seaweedfs.endpoint, "us-east-1", seaweedfs.access_key, seaweedfs.secret_key,
                    force_path_style=True)
    key = index_key(backup_prefix("indexed", "production", "la"))
    store.delete(key)
    shown = dev.tako("backups", "list", "--env", "production")
    assert shown.exit_code == 0, shown.output
    assert shown.stderr == ("! la: index.json was missing or unreadable; the server rebuilt it "
                            "from the manifests.\n")
    assert shown.stdout.count("\n") == 2 + len(every)
    store.put_bytes(key, b"garbage")
    rebuilt = dev.tako("backups", "reindex", "--env", "production")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert rebuilt.stdout == (HEAD.format(app="indexed") +
                              f"la: rebuilt index.json from {len(every)} backups (it was unreadable)\n")
    assert backups(dev) == every


def test_rotate_reencrypt_retire(dev: Developer, la: RunningServer, seaweedfs: SeaweedFS,
                                 bucket: str) -> None:
    live = project(dev, la, seaweedfs, bucket, "rotated")
    secrets_path = dev.app_dir / ".tako" / "secrets.json"
    [old] = [k.id for k in load_secrets(secrets_path).envs["production"].backup_keys]
    count = len(backups(dev))

    rotated = dev.tako("backups", "keys", "rotate", "--env", "production")
    assert rotated.exit_code == 0, rotated.output
    keys = load_secrets(secrets_path).envs["production"].backup_keys
    assert [k.id for k in keys][0] == old and len(keys) == 2
    new = keys[-1].id
    assert rotated.stdout == (HEAD.format(app="rotated") + f"Added backup key {new} to production; it is now "
                              "the active key.\nRun `tako backups now --env production` or deploy to send "
                              "it to the servers, then `tako backups keys reencrypt --env production`.\n")
    assert keys[-1].value not in rotated.output and secrets_path.stat().st_mode & 0o777 == 0o600

    refused = dev.tako("backups", "keys", "retire", old, "--env", "production")
    assert (refused.exit_code, refused.stderr) == (1, (
        f"error: Key {old} still encrypts {count} retained backups on server la; run tako backups keys "
        "reencrypt first.\n"))
    active = dev.tako("backups", "keys", "retire", new, "--env", "production")
    assert active.stderr == (f"error: Key {new} is the active backup key of 'production'; run "
                             "`tako backups keys rotate --env production` first.\n")

    moved = dev.tako("backups", "keys", "reencrypt", "--env", "production")
    assert moved.exit_code == 0, moved.output
    assert moved.stdout == (HEAD.format(app="rotated") +
                            f"la: re-encrypted {count} backups with {new} (0 already used it)\n")
    after = backups(dev)
    assert len(after) == count and {b.encryption.key_id for b in after} == {new}

    retired = dev.tako("backups", "keys", "retire", old, "--env", "production")
    assert retired.exit_code == 0, retired.output
    assert retired.stdout == HEAD.format(app="rotated") + f"Retired backup key {old} from production.\n"
    assert [k.id for k in load_secrets(secrets_path).envs["production"].backup_keys] == [new]

    made = dev.tako("backups", "now", "--env", "production")  # the servers now hold only the new key
    assert made.exit_code == 0, made.output
    (live / "app" / "uploads" / "a.txt").write_text("damaged\n")
    newest_made = newest(dev)
    full = next(b for b in after if b.extras is not None and b.extras.files == 4)
    restored = dev.tako("backups", "restore", full.id, "--yes", "--no-safety-backup", "--env", "production")
    assert restored.exit_code == 0, restored.output
    assert (live / "app" / "uploads" / "a.txt").read_text() == "first upload\n"
    assert newest_made.encryption.key_id == new
