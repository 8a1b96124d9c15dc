"""Keys for tests: SSH signing keys made by ssh-keygen, and backup keys.

Fixture names have one meaning in the whole suite: ``signer`` is the authorized client SSH key
(a FileSigner), ``stranger`` a valid SSH key that was never authorized, and ``key`` a backup key
(a BackupKey, the AES-256 key of ``secrets.json``)."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

from tako_backups.models import BackupKey
from tako_backups.remote.signing import FileSigner

SSH_KEYGEN = "/usr/bin/ssh-keygen"


def make_key(path: Path, comment: str = "tester@test") -> FileSigner:
    """An ed25519 key pair written by ssh-keygen at ``path`` (+ ``.pub``), loaded as a signer."""
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)
    return FileSigner.load(path)


def new_backup_key() -> BackupKey:
    """A backup key with a fresh random id and 32 random bytes."""
    return BackupKey("backup-key-" + secrets.token_hex(8), os.urandom(32))
