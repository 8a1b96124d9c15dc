"""kill -9 of a real tako-server at each step of a restore, then a restart.

After the restart the app's data dir is exactly the old tree (crash before the swap) or exactly
the restored one (crash after it), never a mix; nothing is left in ``tmp/restore/``; the notes
app runs again and writes to an intact database. The crash points come from
``tests/security/crash_launcher.py`` (the shipped server has no crash hook).
"""

from __future__ import annotations

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
from tests.server.e2e_support import NOTES_RUNTIME, app_pids, integrity, notes, wait_for

pytestmark = pytest.mark.slow

MARKED = 40  # files whose content tells the old tree from the restored one

# point -> (tree after the restart, whether the app still runs when the server dies,
#           what the crash left: staging tree/, staging aside/, live data dir)
OUTCOMES = {
    "download": ("old", True, (True, False, True)),
    "staged": ("old", True, (True, False, True)),
    "stopped": ("old", False, (True, False, True)),
    "between-renames": ("old", False, (True, True, False)),
    "swapped": ("new", False, (False, True, True)),
    "cleaned": ("new", False, (False, False, True)),
    "started": ("new", True, (False, False, True)),
}


def left_by_crash(data_dir: Path) -> tuple[bool, bool, bool]:
    stagings = list((data_dir / "tmp" / "restore").iterdir())
    assert len(stagings) <= 1, stagings
    staging = stagings[0] if stagings else data_dir / "none"
    return (staging / "tree").exists(), (staging / "aside").exists(), live_dir(data_dir).exists()


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

        with server.client(signer) as client, pytest.raises(RemoteError):
            client.call("restore_backup", {"app": APP, "backup_id": info["id"]})
        assert wait_exit(server) == -9, server.log_tail()
        assert f"crash_launcher: SIGKILL at {point}" in server.log_tail()
        orphans = kill_app_processes(app_dir)
        assert bool(orphans) == app_was_running
        assert left_by_crash(data_dir) == crash_state

        server = launch(data_dir, signer)
        assert list((data_dir / "tmp" / "restore").iterdir()) == []
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
