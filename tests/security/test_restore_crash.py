"""kill -9 of a real tako-server at each step of a restore and of an undo, then a restart.

After the restart the app's data dir is exactly the old tree (crash before the swap) or exactly
the restored one (crash after it), never a mix; nothing is left in ``tmp/restore/``; the tree
that is not live is the app's recorded kept tree (its upload resumed, recorded once and read
back) or, before the swap, nothing; the notes app runs again and writes to an intact database.
The crash points come from ``tests/security/crash_launcher.py`` (the shipped server has no
crash hook).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import pytest

from tako_backups.errors import RemoteError
from tako_backups.models import BackupBinding
from tako_backups.remote.signing import FileSigner
from tests.security.server_proc import (
    APP,
    extract_backup,
    kill_app_processes,
    launch,
    live_dir,
    wait_exit,
)
from tests.support.sqlite_checks import integrity
from tests.support.tako_server import NOTES_RUNTIME, RunningServer, app_pids, notes
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

MARKED = 40  # files whose content tells the old tree from the restored one

# point -> (tree after the restart, whether the app still runs when the server dies,
#           what the crash left: staging tree/, staging aside/, live data dir, kept tree)
OUTCOMES = {
    "download": ("old", True, (True, False, True, False)),
    "staged": ("old", True, (True, False, True, False)),
    "stopped": ("old", False, (True, False, True, False)),
    "between-renames": ("old", False, (True, True, False, False)),
    "swapped": ("new", False, (False, True, True, False)),
    "started": ("new", True, (False, True, True, False)),
    "kept": ("new", True, (False, False, True, True)),
    "uploading": ("new", True, (False, False, True, True)),
    "uploaded": ("new", True, (False, False, True, True)),
}
BACKGROUND = ("uploading", "uploaded")  # points met after the reply, by the background upload


def left_by_crash(data_dir: Path) -> tuple[bool, bool, bool, bool]:
    stagings = list((data_dir / "tmp" / "restore").iterdir())
    assert len(stagings) <= 1, stagings
    staging = stagings[0] if stagings else data_dir / "none"
    return ((staging / "tree").exists(), (staging / "aside").exists(), live_dir(data_dir).exists(),
            kept_tree(data_dir).exists())


def kept_tree(data_dir: Path) -> Path:
    return data_dir / "kept" / "notes.production" / "aside"


def kept_status(server: RunningServer, signer: FileSigner) -> dict[str, Any] | None:
    with server.client(signer) as client:
        status: dict[str, Any] = client.call("backup_status", {"app": APP})
    return status.get("kept_tree")


def wait_until_in_bucket(server: RunningServer, signer: FileSigner) -> dict[str, Any]:
    wait_for(lambda: (kept_status(server, signer) or {}).get("upload") == "verified",
             "the kept tree to be uploaded and read back")
    kept = kept_status(server, signer)
    assert kept is not None
    return kept


def pre_restore_backups(server: RunningServer, signer: FileSigner) -> list[dict[str, Any]]:
    with server.client(signer) as client:
        listed = client.call("list_backups", {"app": APP})["backups"]
    return [b for b in listed if (b.get("extras") or {}).get("reason") == "pre-restore"]


def write_tree(app_dir: Path, side: str) -> dict[str, bytes]:
    """Make ``app_dir`` the ``side`` ("new": what the backup holds; "old": the live data when the
    restore starts); return the marked files' relative paths and contents."""
    files = {f"marked/f{i:02d}.txt": f"{side} {i}\n".encode() for i in range(MARKED)}
    files[f"{side}-only.txt"] = side.encode()
    files["blob.bin"] = os.urandom(600_000)  # makes the archive long enough to die mid-stream
    other = "old" if side == "new" else "new"
    (app_dir / f"{other}-only.txt").unlink(missing_ok=True)
    for rel, data in files.items():
        (app_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (app_dir / rel).write_bytes(data)
    return files


def uploads(app_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (app_dir / "uploads").glob("note-*.txt")}


@pytest.mark.parametrize("point", list(OUTCOMES))
def test_kill_9_during_restore_leaves_old_or_new_tree_never_a_mix(
        point: str, tmp_path: Path, signer: FileSigner, moto_settings: BackupBinding) -> None:
    expected, app_was_running, crash_state = OUTCOMES[point]
    data_dir = tmp_path / "tako"
    live = live_dir(data_dir)
    app_dir = live / "app"
    server = launch(data_dir, signer, crash_at=point)
    try:
        with server.client(signer) as client:
            deployed = client.call("deploy", {"app": APP, "backup": moto_settings.to_dict(),
                                              "runtime": NOTES_RUNTIME})
            assert deployed["backup"]["status"] == "created"
            wait_for(lambda: len(notes(app_dir / "notes.db")) >= 20, "the notes app to write rows")
            new_files = write_tree(app_dir, "new")
            info = client.call("backup_now", {"app": APP, "backup": None})
        restored = extract_backup(moto_settings, info, tmp_path / "backup")
        new_rows = notes(restored / "app" / "notes.db")
        new_uploads = uploads(restored / "app")
        assert len(new_rows) >= 20 and new_uploads

        old_files = write_tree(app_dir, "old")
        wait_for(lambda: len(notes(app_dir / "notes.db")) >= len(new_rows) + 10, "more rows after the backup")
        old_rows = notes(app_dir / "notes.db")
        old_uploads = uploads(app_dir)

        with server.client(signer) as client:
            if point in BACKGROUND:  # the restore is done; the server dies after (or while) answering
                with contextlib.suppress(RemoteError):
                    assert client.call("restore_backup", {"app": APP, "backup_id": info["id"]}) == info
            else:
                with pytest.raises(RemoteError):
                    client.call("restore_backup", {"app": APP, "backup_id": info["id"]})
        assert wait_exit(server) == -9, server.log_tail()
        assert f"crash_launcher: SIGKILL at {point}" in server.log_tail()
        orphans = kill_app_processes(app_dir)
        assert bool(orphans) == app_was_running
        assert left_by_crash(data_dir) == crash_state

        server = launch(data_dir, signer)
        assert list((data_dir / "tmp" / "restore").iterdir()) == []
        if expected == "new":  # the old tree is the kept tree, recorded; its upload resumes
            assert {rel: (kept_tree(data_dir) / "app" / rel).read_bytes() for rel in old_files} == old_files
            kept = wait_until_in_bucket(server, signer)
            [uploaded] = pre_restore_backups(server, signer)  # recorded once, also after a resumed upload
            assert uploaded["id"] == kept["backup_id"]
            safety = extract_backup(moto_settings, uploaded, tmp_path / "safety")
            assert {rel: (safety / "app" / rel).read_bytes() for rel in old_files} == old_files
        else:
            assert not (data_dir / "kept" / "notes.production").exists()
        assert sorted(p.name for p in live.iterdir()) == ["app", "tako"]
        files, rows, kept_uploads = ((new_files, new_rows, new_uploads) if expected == "new"
                                     else (old_files, old_rows, old_uploads))
        assert {rel: (app_dir / rel).read_bytes() for rel in files} == files
        assert not (app_dir / ("old-only.txt" if expected == "new" else "new-only.txt")).exists()
        assert sorted(p.name for p in (app_dir / "marked").iterdir()) == sorted(
            Path(rel).name for rel in files if rel.startswith("marked/"))
        assert {name: data for name, data in uploads(app_dir).items() if name in kept_uploads} == kept_uploads
        assert integrity(app_dir / "notes.db") == "ok"
        assert notes(app_dir / "notes.db", limit=len(rows)) == rows
        if expected == "new":
            after_backup = notes(app_dir / "notes.db", limit=len(old_rows))[len(new_rows):]
            assert after_backup != old_rows[len(new_rows):]

        wait_for(lambda: len(app_pids(app_dir)) == 1, "the app to run again after the restart")
        wait_for(lambda: len(notes(app_dir / "notes.db")) >= len(rows) + 5, "the app to write again")
        with server.client(signer) as client:
            again: Any = client.call("restore_backup", {"app": APP, "backup_id": info["id"]})
        assert again == info
        assert {rel: (app_dir / rel).read_bytes() for rel in new_files} == new_files
        assert notes(app_dir / "notes.db", limit=len(new_rows)) == new_rows
    finally:
        code = server.terminate()
    assert code == 0, server.log_tail()
    assert app_pids(app_dir) == []


# point -> (tree live after the restart, whether the app still runs when the server dies,
#           what the crash left: staging tree/, staging aside/, live data dir, kept tree)
UNDO_OUTCOMES = {
    "undo-between-renames": ("restored", False, (False, True, False, True)),
    "undo-swapped": ("kept", False, (False, True, True, False)),
    "undo-started": ("kept", True, (False, True, True, False)),
}


@pytest.mark.parametrize("point", list(UNDO_OUTCOMES))
def test_kill_9_during_undo_leaves_one_tree_live_and_the_other_kept(
        point: str, tmp_path: Path, signer: FileSigner, moto_settings: BackupBinding) -> None:
    expected, app_was_running, crash_state = UNDO_OUTCOMES[point]
    data_dir = tmp_path / "tako"
    app_dir = live_dir(data_dir) / "app"
    server = launch(data_dir, signer, crash_at=point)
    try:
        with server.client(signer) as client:
            client.call("deploy", {"app": APP, "backup": moto_settings.to_dict(), "runtime": NOTES_RUNTIME})
            wait_for(lambda: len(notes(app_dir / "notes.db")) >= 20, "the notes app to write rows")
            restored_files = write_tree(app_dir, "new")
            info = client.call("backup_now", {"app": APP, "backup": None})
            kept_files = write_tree(app_dir, "old")
            reply = client.call_reply("restore_backup", {"app": APP, "backup_id": info["id"]})
            assert reply["safety_backup"]["status"] == "kept"
            wait_for(lambda: len(app_pids(app_dir)) == 1, "the restored app to run")
            with pytest.raises(RemoteError):
                client.call("undo_restore", {"app": APP})
        assert wait_exit(server) == -9, server.log_tail()
        assert f"crash_launcher: SIGKILL at {point}" in server.log_tail()
        assert bool(kill_app_processes(app_dir)) == app_was_running
        assert left_by_crash(data_dir) == crash_state

        server = launch(data_dir, signer)
        assert list((data_dir / "tmp" / "restore").iterdir()) == []
        live_files, other = ((kept_files, restored_files) if expected == "kept"
                             else (restored_files, kept_files))
        assert {rel: (app_dir / rel).read_bytes() for rel in live_files} == live_files
        assert {rel: (kept_tree(data_dir) / "app" / rel).read_bytes() for rel in other} == other
        assert integrity(app_dir / "notes.db") == "ok"
        wait_for(lambda: len(app_pids(app_dir)) == 1, "the app to run again after the restart")
        kept = wait_until_in_bucket(server, signer)
        assert kept["replaced_by"] == ("undo" if expected == "kept" else info["id"])
        with server.client(signer) as client:  # and the undo still works (or works again)
            undone = client.call("undo_restore", {"app": APP})
        assert undone["source"] == "kept"
        assert {rel: (app_dir / rel).read_bytes() for rel in other} == other
    finally:
        code = server.terminate()
    assert code == 0, server.log_tail()
    assert app_pids(app_dir) == []
