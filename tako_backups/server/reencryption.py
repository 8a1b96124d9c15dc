"""Key rotation on the server: write every retained backup that is not under the active key
again under it (``reencrypt_backups``), in the backup copy too."""

from __future__ import annotations

import logging
from typing import Any

from ..core import rekey
from ..errors import TakoError
from ..models import BackupBinding, BackupInfo
from ..primitives.names import check_app_id
from .app_backups import AppBackups
from .copies import BackupCopies
from .index_repair import IndexRepair

__all__ = ["Reencryption"]

log = logging.getLogger(__name__)


class Reencryption:
    """Re-encrypts an app's retained backups under its active key. Thread-safe."""

    def __init__(self, backups: AppBackups, index: IndexRepair, copies: BackupCopies | None = None) -> None:
        self._backups = backups
        self._index = index
        self._copies = copies

    def reencrypt_backups(self, app: str, backup: BackupBinding | None) -> dict[str, Any]:
        """Store ``backup`` (when given), then write every retained backup that is not under the
        active key again under it: new archive and manifest, index updated, old objects deleted.

        Returns ``{"app", "key_id", "reencrypted": [{"from", "to", "key_id"}], "unchanged"}``.
        Stops at the first failure with its error, saying how many were done (those stay done;
        running it again continues). Raises BusyError, NotFoundError, KeyNotFoundError,
        IntegrityError or StorageError.
        """
        check_app_id(app)
        with self._backups.locks.hold(app):
            if backup is not None:
                self._backups.store_settings(app, backup)
            settings = self._backups.settings(app)
            store, prefix = self._backups.location(app, settings)
            active = settings.active_key
            index = self._index.read(app, settings, locked=True).index
            todo = [b for b in index.backups if b.encryption.key_id != active.id]
            done: list[dict[str, str]] = []
            swaps: list[tuple[BackupInfo, BackupInfo]] = []
            try:
                for info in todo:
                    try:
                        new = rekey.reencrypt_backup(store, prefix, info, settings.backup_keys, active)
                        rekey.swap_backup(store, prefix, info, new)
                    except TakoError as exc:
                        raise type(exc)(f"Re-encrypted {len(done)} of {len(todo)} backups of app '{app}'; "
                                        f"backup {info.id} failed: {exc}") from None
                    log.info("re-encrypted %s backup %s (%s) as %s (%s)", app, info.id,
                             info.encryption.key_id, new.id, active.id)
                    done.append({"from": info.id, "to": new.id, "key_id": info.encryption.key_id})
                    swaps.append((info, new))
            finally:
                if self._copies is not None:
                    self._copies.mirror_reencrypted(app, settings, swaps)
        return {"app": app, "key_id": active.id, "reencrypted": done,
                "unchanged": len(index.backups) - len(todo)}
