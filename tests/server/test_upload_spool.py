"""tako-server's uploads keep their parts in ``tmp/uploads``, in unnamed files, not in memory."""

from __future__ import annotations

import stat

from tako_backups.models import StorageBinding
from tako_backups.server.paths import ServerPaths
from tako_backups.server.service import BackupService
from tako_backups.storage.s3 import S3Store


def test_the_servers_s3_stores_spool_their_parts_in_a_private_folder(paths: ServerPaths) -> None:
    assert stat.S_IMODE(paths.upload_spool.stat().st_mode) == 0o700
    assert paths.upload_spool.parent == paths.root / "tmp"
    binding = StorageBinding(bucket="backups", endpoint="http://127.0.0.1:9", region="us-east-1",
                             access_key_id="key", secret_access_key="secret", force_path_style=True)
    store = BackupService(paths, "la").backups.store(binding)
    assert isinstance(store, S3Store)
    assert store.spool_dir == paths.upload_spool
