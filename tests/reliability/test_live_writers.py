"""Backups of an app that never stops writing: two notes-app instances on one SQLite database.

Several backups run through a real `tako-server` while both instances commit rows and write
``uploads/note-<id>.txt`` files (temp file, fsync, rename). Every backup is restored offline: each
SQLite file passes ``integrity_check``, the rows are gap-free, every upload file is whole and
matches its row, and every upload whose row was followed by another is there. Then one backup
is restored over the live app through the server and the app writes on.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tako_backups.core import layout
from tako_backups.core.pipeline import restore_into
from tako_backups.models import BackupBinding, BackupInfo
from tako_backups.remote.signing import FileSigner
from tako_backups.storage.s3 import S3Store
from tests.reliability.checks import (
    FIGURES,
    INDEX_CHECKED,
    RESTORED,
    VERIFIED,
    figures_so_far,
    sound_index,
    sqlite_files,
)
from tests.server.helpers import binding, storage
from tests.support.s3_servers import SeaweedFS
from tests.support.sqlite_checks import integrity
from tests.support.tako_server import APP_PYTHON, NOTES_APP, RunningServer, app_pids, notes, running_server
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

APP = "notes/production"
PREFIX = layout.backup_prefix("notes", "production", "la")
BODY = re.compile(r"note from instance [01] at \d+\.\d{3}")
BACKUPS = 10
RUNTIME = {"start": [APP_PYTHON, str(NOTES_APP)], "instances": 2, "env": {"NOTES_INTERVAL": "0.002"}}


@pytest.fixture
def server(tmp_path: Path, signer: FileSigner) -> Iterator[RunningServer]:
    root = tmp_path / "tako"
    blob = root / "apps" / "notes" / "production" / "data" / "app" / "blob.bin"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"\x5a" * 3_000_000 + bytes(range(256)) * 4096)  # makes each backup take a moment
    yield from running_server(root, signer)


def check_restored_app(app_dir: Path) -> tuple[dict[int, str], int]:
    """Check one restored ``app/``; returns (rows, number of upload files)."""
    for db in sqlite_files(app_dir.parent):
        assert integrity(db) == "ok", db
    rows = dict(notes(app_dir / "notes.db"))
    assert rows, "the backup holds no notes"
    assert sorted(rows) == list(range(1, len(rows) + 1)), "rows are missing in the middle"
    assert all(BODY.fullmatch(body) for body in rows.values())
    uploads = {int(p.name[5:-4]): p.read_text() for p in (app_dir / "uploads").glob("note-*.txt")}
    for note_id, text in uploads.items():
        assert note_id % 10 == 0
        if note_id in rows:
            assert text == rows[note_id] + "\n", f"note-{note_id}.txt does not match its row"
        else:  # written after the database snapshot, before the uploads folder was read
            assert BODY.fullmatch(text.removesuffix("\n")) and text.endswith("\n")
    # An instance commits its next row only after the upload of its last one was renamed into place.
    last_of: dict[str, int] = {}
    for note_id, body in rows.items():
        last_of[body.split(" at ")[0]] = max(note_id, last_of.get(body.split(" at ")[0], 0))
    expected = {i for i, body in rows.items() if i % 10 == 0 and i < last_of[body.split(" at ")[0]]}
    assert expected <= set(uploads), f"uploads missing: {sorted(expected - set(uploads))[:5]}"
    return rows, len(uploads)


def test_backups_of_a_busy_app_restore_consistent_databases_and_whole_uploads(
    server: RunningServer, signer: FileSigner, seaweedfs: SeaweedFS, bucket: str, s3: object, tmp_path: Path,
) -> None:
    settings: BackupBinding = binding(storage(
        bucket=bucket, endpoint=seaweedfs.endpoint, access_key=seaweedfs.access_key,
        secret_key=seaweedfs.secret_key))
    live = server.data_dir / "apps" / "notes" / "production" / "data" / "app"
    with server.client(signer) as client:
        finalized = client.call("deploy", {"app": APP, "backup": settings.to_dict(), "runtime": RUNTIME})
        assert finalized["backup"]["status"] == "created"
        wait_for(lambda: len(notes(live / "notes.db")) >= 200, "the notes app to write rows")
        assert len(app_pids(live)) == 2
        taken = [finalized["backup"]["id"]]
        for _ in range(BACKUPS - 1):
            target = len(notes(live / "notes.db")) + 50
            taken.append(client.call("backup_now", {"app": APP, "backup": None})["id"])
            wait_for(lambda: len(notes(live / "notes.db")) > target, "more rows between backups")  # noqa: B023

    index = sound_index(s3, bucket, PREFIX)
    assert sorted(b.id for b in index.backups) == sorted(taken)
    store: Any = S3Store(bucket, seaweedfs.endpoint, "us-east-1", seaweedfs.access_key, seaweedfs.secret_key,
                    force_path_style=True)
    saved: dict[str, dict[int, str]] = {}
    uploads = 0
    for n, info in enumerate(reversed(index.backups)):
        tree = restore_into(store, info, settings.backup_keys, tmp_path / f"staging-{n}").tree
        FIGURES[RESTORED] += 1
        saved[info.id], count = check_restored_app(tree / "app")
        FIGURES[VERIFIED] += 1
        uploads += count
    sizes = [len(saved[backup_id]) for backup_id in taken]  # in the order they were taken
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0] + 200, "later backups hold more rows"
    assert uploads >= sum(sizes) // 10 - len(sizes)
    assert figures_so_far() == {INDEX_CHECKED: BACKUPS, RESTORED: BACKUPS, VERIFIED: BACKUPS}

    # Restore the middle backup over the live, writing app; it comes back and writes on.
    middle: BackupInfo = next(b for b in index.backups if b.id == taken[len(taken) // 2])
    with server.client(signer) as client:
        assert client.call("restore_backup", {"app": APP, "backup_id": middle.id}) == middle.to_dict()
    kept = saved[middle.id]
    wait_for(lambda: len(notes(live / "notes.db")) > len(kept) + 20, "the restored app to write again")
    assert dict(notes(live / "notes.db", limit=len(kept))) == kept
    assert len(app_pids(live)) == 2
    assert integrity(live / "notes.db") == "ok"
