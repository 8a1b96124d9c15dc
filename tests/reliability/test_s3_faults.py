"""S3 faults between the store and SeaweedFS, through the real core pipeline.

Transient faults (5xx, resets, lost replies, slow answers) are retried and the backup restores
byte for byte; permanent ones fail with one line naming the request; after any failed backup the
index names only objects that exist, no multipart upload is left and no archive is half there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tako_backups.core import layout, leftovers
from tako_backups.core.pipeline import BackupResult, restore_into
from tako_backups.errors import StorageAuthError, StorageError
from tako_backups.models import BackupKey
from tests.reliability.checks import (
    FAULTS,
    FIGURES,
    INDEX_CHECKED,
    RESTORED,
    SLOWDOWNS,
    VERIFIED,
    archives_without_manifest,
    figures_so_far,
    file_digests,
    objects,
    pending_uploads,
    sound_index,
    sqlite_files,
    sqlite_rows,
)
from tests.reliability.faultproxy import Fault, FaultProxy
from tests.support.backups import take_backup
from tests.support.sqlite_checks import integrity

pytestmark = pytest.mark.slow

PREFIX = layout.backup_prefix("demo", "production", "la")
ARCHIVE = r"\.tar\.zst\.enc$"
MANIFEST = r"/b\d+-[A-Za-z0-9_-]{8}\.json$"
INDEX = r"/index\.json$"
DAY = 86_400


def run_backup(store: Any, tree: Path, work: Path, key: BackupKey, **kw: Any) -> BackupResult:
    return take_backup(store, tree, key, work=work, **kw)


def restored_matches(store: Any, result: BackupResult, key: BackupKey, tree: Path, staging: Path) -> None:
    restored = restore_into(store, result.info, [key], staging).tree
    FIGURES[RESTORED] += 1
    assert file_digests(restored) == file_digests(tree)
    for db in sqlite_files(tree):
        copy = restored / db.relative_to(tree)
        assert integrity(copy) == "ok"
        assert sqlite_rows(copy) == sqlite_rows(db)
    FIGURES[VERIFIED] += 1


def assert_clean_after_failure(s3: Any, bucket: str, before: dict[str, int], work: Path) -> None:
    """A failed backup changed nothing on the bucket and left no upload and no scratch folder."""
    assert objects(s3, bucket, PREFIX) == before
    assert pending_uploads(s3, bucket) == []
    sound_index(s3, bucket, PREFIX)
    assert list(work.iterdir()) == []


def test_transient_faults_are_retried_and_the_backup_restores_exactly(
    proxy: FaultProxy, proxied_store: Callable[..., Any], s3: Any, bucket: str, big_tree: Path,
    tmp_path: Path, key: BackupKey,
) -> None:
    proxy.add(
        Fault("CreateMultipartUpload", "error", status=503, code="SlowDown"),
        Fault("UploadPart", "reset", part=1),
        Fault("UploadPart", "error", part=2, status=500, code="InternalError", times=2),
        Fault("UploadPart", "lose_reply", part=3),
        Fault("UploadPart", "delay", part=3, seconds=1.0),
        Fault("CompleteMultipartUpload", "lose_reply"),
        Fault("PutObject", "error", key=MANIFEST, status=503, code="ServiceUnavailable"),
        Fault("PutObject", "lose_reply", key=MANIFEST),
        Fault("GetObject", "error", key=INDEX, status=500),
        Fault("ListObjectsV2", "reset"),
        Fault("PutObject", "reset", key=INDEX),
        Fault("GetObject", "error", key=ARCHIVE, status=503, code="SlowDown"),
    )
    store = proxied_store()
    result = run_backup(store, big_tree, tmp_path / "work", key)

    assert [f.fired for f in proxy.faults] == [1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 0]
    assert len(proxy.ops("UploadPart")) >= 3 + 1 + 2 + 1
    index = sound_index(s3, bucket, PREFIX)
    assert index.backups == [result.info]
    assert pending_uploads(s3, bucket) == []
    assert archives_without_manifest(s3, bucket, PREFIX) == []
    restored_matches(store, result, key, big_tree, tmp_path / "staging")
    assert proxy.faults[-1].fired == 1
    assert figures_so_far(proxy) == {FAULTS: 12, SLOWDOWNS: 1, INDEX_CHECKED: 1, RESTORED: 1, VERIFIED: 1}


def test_a_download_cut_mid_body_fails_cleanly_and_the_next_restore_works(
    proxy: FaultProxy, proxied_store: Callable[..., Any], big_tree: Path, tmp_path: Path,
    key: BackupKey,
) -> None:
    store = proxied_store()
    result = run_backup(store, big_tree, tmp_path / "work", key)
    proxy.add(Fault("GetObject", "cut_body", key=ARCHIVE))
    with pytest.raises(StorageError) as failure:
        restore_into(store, result.info, [key], tmp_path / "staging")
    assert str(failure.value) == (f"The connection to storage endpoint {proxy.endpoint} broke while trying "
                                  f"to read '{result.info.archive_key}' (ResponseStreamingError).")
    assert not (tmp_path / "staging").exists()
    restored_matches(store, result, key, big_tree, tmp_path / "staging")
    assert figures_so_far(proxy) == {FAULTS: 1, RESTORED: 1, VERIFIED: 1}


def test_a_part_that_keeps_failing_fails_the_backup_with_one_line(
    proxy: FaultProxy, proxied_store: Callable[..., Any], s3: Any, bucket: str, big_tree: Path,
    small_tree: Path, tmp_path: Path, key: BackupKey,
) -> None:
    store = proxied_store(max_retries=2)
    first = run_backup(store, small_tree, tmp_path / "work", key)
    before = objects(s3, bucket, PREFIX)
    proxy.add(Fault("UploadPart", "error", part=2, times=None, status=503, code="ServiceUnavailable"))
    with pytest.raises(StorageError) as failure:
        run_backup(store, big_tree, tmp_path / "work", key)
    archive = proxy.ops("CreateMultipartUpload")[0].key
    assert re.fullmatch(PREFIX + r"b\d+-[A-Za-z0-9_-]{8}\.tar\.zst\.enc", archive)
    assert str(failure.value) == (f"Storage request failed while trying to upload part 2 of '{archive}' at "
                                  f"storage endpoint {proxy.endpoint}: ServiceUnavailable (HTTP 503).")
    assert len(proxy.ops("UploadPart", archive)) >= 3
    assert proxy.faults[0].fired == 3  # the first try and two retries
    assert len(proxy.ops("AbortMultipartUpload")) == 1
    assert_clean_after_failure(s3, bucket, before, tmp_path / "work")
    assert sound_index(s3, bucket, PREFIX).backups == [first.info]
    assert figures_so_far(proxy) == {FAULTS: 3, INDEX_CHECKED: 2}


def test_resets_that_never_stop_fail_with_one_line(
    proxy: FaultProxy, proxied_store: Callable[..., Any], s3: Any, bucket: str, big_tree: Path,
    tmp_path: Path, key: BackupKey,
) -> None:
    store = proxied_store(max_retries=1)
    proxy.add(Fault("UploadPart", "reset", part=1, times=None))
    with pytest.raises(StorageError) as failure:
        run_backup(store, big_tree, tmp_path / "work", key)
    archive = proxy.ops("CreateMultipartUpload")[0].key
    message = str(failure.value)
    assert message.startswith(f"The connection to storage endpoint {proxy.endpoint} ")
    assert message.endswith(f"while trying to upload part 1 of '{archive}' (ConnectionClosedError).")
    assert "\n" not in message
    assert_clean_after_failure(s3, bucket, {}, tmp_path / "work")
    assert figures_so_far(proxy) == {FAULTS: 2}  # the first try and one retry


def test_a_403_on_one_part_is_an_auth_error_and_not_retried(
    proxy: FaultProxy, proxied_store: Callable[..., Any], s3: Any, bucket: str, big_tree: Path,
    tmp_path: Path, key: BackupKey,
) -> None:
    store = proxied_store()
    proxy.add(Fault("UploadPart", "error", part=2, status=403, code="AccessDenied"))
    with pytest.raises(StorageAuthError) as failure:
        run_backup(store, big_tree, tmp_path / "work", key)
    archive = proxy.ops("CreateMultipartUpload")[0].key
    assert str(failure.value) == (
        f"Storage endpoint {proxy.endpoint} refused the credentials (AccessDenied) while trying to upload "
        f"part 2 of '{archive}': check the access key id and secret for storage bucket '{bucket}'.")
    assert len([s for s in proxy.ops("UploadPart") if s.part == 2]) == 1
    assert_clean_after_failure(s3, bucket, {}, tmp_path / "work")
    assert figures_so_far(proxy) == {FAULTS: 1}


def test_a_manifest_that_cannot_be_written_takes_its_archive_back(
    proxy: FaultProxy, proxied_store: Callable[..., Any], s3: Any, bucket: str, small_tree: Path,
    big_tree: Path, tmp_path: Path, key: BackupKey,
) -> None:
    store = proxied_store(max_retries=1)
    first = run_backup(store, small_tree, tmp_path / "work", key)
    before = objects(s3, bucket, PREFIX)
    proxy.add(Fault("PutObject", "error", key=MANIFEST, times=None, status=500))
    with pytest.raises(StorageError) as failure:
        run_backup(store, big_tree, tmp_path / "work", key)
    manifest = proxy.ops("PutObject", MANIFEST)[-1].key
    assert str(failure.value) == (f"Storage request failed while trying to upload '{manifest}' at storage "
                                  f"endpoint {proxy.endpoint}: InternalError (HTTP 500).")
    assert proxy.ops("DeleteObject", ARCHIVE)[0].key == manifest.removesuffix(".json") + ".tar.zst.enc"
    assert_clean_after_failure(s3, bucket, before, tmp_path / "work")
    assert sound_index(s3, bucket, PREFIX).backups == [first.info]
    assert figures_so_far(proxy) == {FAULTS: 2, INDEX_CHECKED: 2}


def test_an_index_that_cannot_be_written_keeps_the_old_one_and_leaves_no_orphan(
    proxy: FaultProxy, proxied_store: Callable[..., Any], s3: Any, bucket: str, small_tree: Path,
    tmp_path: Path, key: BackupKey,
) -> None:
    store = proxied_store(max_retries=1)
    first = run_backup(store, small_tree, tmp_path / "work", key, now=1_800_000_000)
    before = objects(s3, bucket, PREFIX)
    proxy.add(Fault("PutObject", "error", key=INDEX, times=None, status=500))
    with pytest.raises(StorageError) as failure:
        run_backup(store, small_tree, tmp_path / "work", key, now=1_800_000_100)
    assert str(failure.value) == (f"Storage request failed while trying to upload '{PREFIX}index.json' at "
                                  f"storage endpoint {proxy.endpoint}: InternalError (HTTP 500).")
    assert_clean_after_failure(s3, bucket, before, tmp_path / "work")  # its archive and manifest went again
    assert sound_index(s3, bucket, PREFIX).backups == [first.info]
    proxy.clear()
    third = run_backup(store, small_tree, tmp_path / "work", key, now=1_800_000_200)
    assert sound_index(s3, bucket, PREFIX).backups == [third.info, first.info]
    assert figures_so_far(proxy) == {FAULTS: 2, INDEX_CHECKED: 4}


def test_failed_retention_deletes_never_leave_the_index_naming_missing_objects(
    proxy: FaultProxy, proxied_store: Callable[..., Any], s3: Any, bucket: str, small_tree: Path,
    tmp_path: Path, key: BackupKey,
) -> None:
    store = proxied_store(max_retries=0)
    now = 1_800_000_000
    old = [run_backup(store, small_tree, tmp_path / "w", key, now=now - days * DAY).info
           for days in (50, 45, 40, 35)]
    proxy.add(Fault("DeleteObject", "error", times=None, status=500))
    new = run_backup(store, small_tree, tmp_path / "w", key, now=now)
    # 30 days and a floor of 3: the two oldest expire, but their deletes fail.
    assert [b.id for b in new.pruned] == [old[1].id, old[0].id]
    assert sound_index(s3, bucket, PREFIX).backups == [new.info, old[3], old[2]]
    assert {old[0].archive_key, old[1].manifest_key} <= set(objects(s3, bucket, PREFIX))
    proxy.clear()
    newer = run_backup(store, small_tree, tmp_path / "w", key, now=now + 60)
    assert sound_index(s3, bucket, PREFIX).backups == [newer.info, new.info, old[3]]
    left = objects(s3, bucket, PREFIX)
    assert not any(b.archive_key in left or b.manifest_key in left for b in old[:3])
    assert figures_so_far(proxy) == {FAULTS: 4, INDEX_CHECKED: 6}  # 2 archives + 2 manifests not deleted


def test_an_abort_the_store_refuses_is_cleaned_up_by_the_next_run(
    proxy: FaultProxy, proxied_store: Callable[..., Any], s3: Any, bucket: str, big_tree: Path,
    tmp_path: Path, key: BackupKey,
) -> None:
    store = proxied_store(max_retries=0)
    proxy.add(Fault("UploadPart", "error", part=2, times=None, status=500),
              Fault("AbortMultipartUpload", "error", times=None, status=500))
    with pytest.raises(StorageError, match="upload part 2"):
        run_backup(store, big_tree, tmp_path / "work", key)
    archive = proxy.ops("CreateMultipartUpload")[0].key
    assert pending_uploads(s3, bucket) == [archive]
    assert objects(s3, bucket, PREFIX) == {}
    proxy.clear()
    import time

    left = leftovers.clean_leftovers(store, PREFIX, started_before=time.time() + 1)
    assert left == leftovers.Leftovers(uploads_aborted=1, archives_deleted=0)
    assert pending_uploads(s3, bucket) == []
    assert figures_so_far(proxy) == {FAULTS: 2}
