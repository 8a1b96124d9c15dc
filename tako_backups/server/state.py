"""Per-app settings kept by the server, encrypted at rest.

The settings hold storage credentials, backup keys and app environment variables, so each app's
file (``state/apps/{name}.{env}.enc``) is AES-256-GCM under the server key ``state/server.key``
(32 random bytes, base64, mode 0600, made on first use). The app id is the associated data, so a
file copied to another app's name does not decrypt. Writes are atomic (temp file, fsync, rename).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import ConfigError, FormatError
from ..models import BackupBinding
from ..primitives.atomic_files import os_reason, write_atomic
from ..primitives.json_shapes import check_fields
from ..primitives.names import check_app_id
from ..remote.protocol import RuntimeSettings

__all__ = ["AppState", "StateStore"]

MAGIC = b"TAKOSTATE1"
NONCE_BYTES = 12


@dataclass(frozen=True)
class AppState:
    """What the server knows about one app: backup settings (None: disabled) and how to run it."""

    backup: BackupBinding | None = None
    runtime: RuntimeSettings | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"version": 1,
                "backup": None if self.backup is None else self.backup.to_dict(),
                "runtime": None if self.runtime is None else self.runtime.to_dict()}

    @classmethod
    def from_dict(cls, obj: Any) -> AppState:
        """Raises FormatError for anything but the layout :meth:`to_dict` writes."""
        fields = check_fields(obj, "App state", {"version": int},
                              {"backup": (dict, type(None)), "runtime": (dict, type(None))})
        if fields["version"] != 1:
            raise FormatError("App state has an unknown layout.")
        backup = fields.get("backup")
        runtime = fields.get("runtime")
        return cls(backup=None if backup is None else BackupBinding.from_dict(backup),
                   runtime=None if runtime is None else RuntimeSettings.from_dict(runtime))

    def with_backup(self, backup: BackupBinding | None) -> AppState:
        return replace(self, backup=backup)


class StateStore:
    """Encrypted per-app settings under ``state_dir``. Thread-safe."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.apps_dir = self.state_dir / "apps"
        self._lock = threading.Lock()
        self._aead: AESGCM | None = None

    def load(self, app: str) -> AppState | None:
        """The app's settings, or None when the server has none.

        Raises ConfigError when the file cannot be read, decrypted or parsed.
        """
        path = self._path(app)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(
                f"Cannot read the settings of app '{app}' ({path}): {os_reason(exc)}.") from None
        if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + NONCE_BYTES + 16:
            raise ConfigError(f"The settings file of app '{app}' ({path}) is damaged; deploy the app again.")
        nonce = blob[len(MAGIC):len(MAGIC) + NONCE_BYTES]
        try:
            plain = self._cipher().decrypt(nonce, blob[len(MAGIC) + NONCE_BYTES:], app.encode())
        except InvalidTag:
            raise ConfigError(
                f"The settings file of app '{app}' ({path}) does not decrypt with the server key "
                f"{self._key_path}; deploy the app again."
            ) from None
        try:
            return AppState.from_dict(json.loads(plain))
        except (ValueError, FormatError) as exc:
            raise ConfigError(
                f"The settings of app '{app}' are invalid ({exc}); deploy the app again.") from None

    def save(self, app: str, state: AppState) -> None:
        """Replace the app's settings atomically. Raises ConfigError when writing fails."""
        path = self._path(app)
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._cipher().encrypt(nonce, json.dumps(state.to_dict()).encode(), app.encode())
        try:
            self.apps_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomic(path, MAGIC + nonce + sealed, mode=0o600)
        except OSError as exc:
            raise ConfigError(
                f"Cannot save the settings of app '{app}' ({path}): {os_reason(exc)}.") from None

    def apps(self) -> list[str]:
        """Every app with saved settings, sorted."""
        found = []
        for path in sorted(self.apps_dir.glob("*.*.enc")):
            name, _, env = path.name[: -len(".enc")].partition(".")
            app = f"{name}/{env}"
            try:
                check_app_id(app)
            except FormatError:
                continue
            found.append(app)
        return found

    @property
    def _key_path(self) -> Path:
        return self.state_dir / "server.key"

    def _path(self, app: str) -> Path:
        name, env = check_app_id(app)
        return self.apps_dir / f"{name}.{env}.enc"

    def _cipher(self) -> AESGCM:
        with self._lock:
            if self._aead is None:
                self._aead = AESGCM(self._load_or_create_key())
            return self._aead

    def _load_or_create_key(self) -> bytes:
        path = self._key_path
        try:
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not path.exists():
                key = secrets.token_bytes(32)
                write_atomic(path, base64.b64encode(key) + b"\n", mode=0o600, exclusive=True)
            text = path.read_bytes().strip()
        except FileExistsError:
            text = path.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"Cannot read or create the server key {path}: {os_reason(exc)}.") from None
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise ConfigError(f"The server key {path} is not base64 of 32 bytes.")
        return key

