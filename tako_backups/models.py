"""Plain data shared by every layer, with JSON in and out exactly as Tako writes it.

Parsing is strict: a missing or unknown field, or a field of the wrong type, raises
:class:`~tako_backups.errors.FormatError` naming the document and the field. The backup settings
a client sends (``BackupBinding`` and its parts) are read as Tako's server reads them instead:
unknown fields are ignored and Tako's defaults fill what is left out (``check_shape``), then the
settings are checked with Tako's texts (``from_dict``). Our optional additions to them
(``BackupBinding.policy``/``copy``/``notify``/``format``, ``StorageBinding.expires_on``) are
parsed strictly when present and left out of the JSON when unset.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import string
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import FormatError
from .primitives.json_shapes import check_fields

if TYPE_CHECKING:
    from .policy import BackupPolicy, NotifySettings

INDEX_VERSION = 1
ALGORITHM = "aes-256-gcm"
ALGORITHM_V2 = "tako-chunked-v2-aes-256-gcm"  # our chunked format 2 (docs/FORMAT-V2.md)
ALGORITHMS = (ALGORITHM, ALGORITHM_V2)
DEFAULT_RETENTION_DAYS = 30
BACKUP_KEY_PREFIX = "backup-key-"
MAX_RETENTION_DAYS = 65535  # Tako's u16
_TEXT_OR_NULL = (str, type(None))
_S3_FIELDS = ("bucket", "endpoint", "region", "access_key_id", "secret_access_key")
ARCHIVE_FORMATS = (1, 2)


JSON_CONTENT_TYPE = "application/json"
"""The Content-Type of the manifests and the index on the bucket (Tako's)."""


def _compact(obj: Any) -> bytes:
    """serde_json's ``to_vec``: no spaces, UTF-8 as is, keys in the order given."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _loads(data: bytes | str, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormatError(f"{what} is not valid JSON ({exc.__class__.__name__}).") from None


@dataclass(frozen=True)
class EncryptionInfo:
    key_id: str
    nonce_base64: str
    tag_base64: str
    algorithm: str = ALGORITHM

    @classmethod
    def from_dict(cls, obj: Any) -> EncryptionInfo:
        d = check_fields(obj, "Backup manifest encryption",
                    {"algorithm": str, "key_id": str, "nonce_base64": str, "tag_base64": str})
        if d["algorithm"] not in ALGORITHMS:
            raise FormatError(f"Backup manifest uses unsupported algorithm '{d['algorithm']}'.")
        return cls(key_id=d["key_id"], nonce_base64=d["nonce_base64"], tag_base64=d["tag_base64"],
                   algorithm=d["algorithm"])

    def to_dict(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm, "key_id": self.key_id,
                "nonce_base64": self.nonce_base64, "tag_base64": self.tag_base64}


@dataclass(frozen=True)
class BackupInfo:
    """One backup's manifest (``{id}.json``); size and SHA-256 describe the encrypted object."""

    id: str
    app: str
    environment: str
    server: str
    created_at_unix_secs: int
    size_bytes: int
    sha256_hex: str
    archive_key: str
    manifest_key: str
    encryption: EncryptionInfo
    extras: BackupExtras | None = None

    @classmethod
    def from_dict(cls, obj: Any) -> BackupInfo:
        d = check_fields(obj, "Backup manifest", {
            "id": str, "app": str, "environment": str, "server": str,
            "created_at_unix_secs": int, "size_bytes": int, "sha256_hex": str,
            "archive_key": str, "manifest_key": str, "encryption": dict,
        }, {"extras": dict})
        return cls(
            id=d["id"], app=d["app"], environment=d["environment"], server=d["server"],
            created_at_unix_secs=d["created_at_unix_secs"], size_bytes=d["size_bytes"],
            sha256_hex=d["sha256_hex"], archive_key=d["archive_key"],
            manifest_key=d["manifest_key"], encryption=EncryptionInfo.from_dict(d["encryption"]),
            extras=BackupExtras.from_dict(d["extras"]) if "extras" in d else None,
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> BackupInfo:
        return cls.from_dict(_loads(data, "Backup manifest"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "app": self.app, "environment": self.environment, "server": self.server,
            "created_at_unix_secs": self.created_at_unix_secs, "size_bytes": self.size_bytes,
            "sha256_hex": self.sha256_hex, "archive_key": self.archive_key,
            "manifest_key": self.manifest_key, "encryption": self.encryption.to_dict(),
            **({"extras": self.extras.to_dict()} if self.extras is not None else {}),
        }

    def to_json(self) -> bytes:
        """Compact JSON as Tako writes it: struct field order (``extras`` last), no newline."""
        return _compact(self.to_dict())


PRE_RESTORE = "pre-restore"
"""The reason of the safety backup a restore takes of the data it replaces."""
REASONS = ("manual", "scheduled", "post-deploy", PRE_RESTORE, "reencrypt")


@dataclass(frozen=True)
class BackupExtras:
    """Our additions to a manifest, under one ``extras`` key; Tako's fields stay as they are.

    ``files``/``bytes`` count regular files in the archive (SQLite snapshots included) so a
    drill can compare what it extracted; ``reason`` says why the backup was taken. A format-2
    archive adds ``format`` (2), ``chunk_size``, ``chunk_count``, ``footer_offset`` and
    ``footer_length`` (docs/FORMAT-V2.md, "The manifest"); they are left out when None.
    """

    files: int
    bytes: int
    sqlite_files: list[str] = field(default_factory=list)
    reason: str = "manual"
    format: int | None = None
    chunk_size: int | None = None
    chunk_count: int | None = None
    footer_offset: int | None = None
    footer_length: int | None = None

    @classmethod
    def from_dict(cls, obj: Any) -> BackupExtras:
        d = check_fields(obj, "Backup manifest extras",
                    {"files": int, "bytes": int, "sqlite_files": list, "reason": str},
                    dict.fromkeys(LAYOUT_EXTRAS, int))
        if not all(isinstance(n, str) for n in d["sqlite_files"]):
            raise FormatError("Backup manifest extras field 'sqlite_files' has the wrong type.")
        if "format" in d and d["format"] not in ARCHIVE_FORMATS:
            raise FormatError("Backup manifest extras field 'format' must be 1 or 2.")
        return cls(files=d["files"], bytes=d["bytes"], sqlite_files=list(d["sqlite_files"]),
                   reason=d["reason"], **{name: d[name] for name in LAYOUT_EXTRAS if name in d})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"files": self.files, "bytes": self.bytes,
                               "sqlite_files": list(self.sqlite_files), "reason": self.reason}
        for name in LAYOUT_EXTRAS:
            if (value := getattr(self, name)) is not None:
                out[name] = value
        return out


LAYOUT_EXTRAS = ("format", "chunk_size", "chunk_count", "footer_offset", "footer_length")
"""The extras a format-2 archive adds (its layout); absent in a format-1 manifest."""


def sort_newest_first(backups: list[BackupInfo]) -> list[BackupInfo]:
    """Tako's index order: by ``created_at_unix_secs``, then id, descending."""
    return sorted(backups, key=lambda b: (b.created_at_unix_secs, b.id), reverse=True)


@dataclass(frozen=True)
class BackupIndex:
    """``index.json``: every retained backup of one app/env/server, newest first."""

    backups: list[BackupInfo] = field(default_factory=list)
    version: int = INDEX_VERSION

    @classmethod
    def from_dict(cls, obj: Any) -> BackupIndex:
        d = check_fields(obj, "Backup index", {"version": int, "backups": list})
        if d["version"] != INDEX_VERSION:
            raise FormatError(f"Backup index has unsupported version {d['version']}.")
        return cls(backups=sort_newest_first([BackupInfo.from_dict(b) for b in d["backups"]]))

    @classmethod
    def from_json(cls, data: bytes | str) -> BackupIndex:
        return cls.from_dict(_loads(data, "Backup index"))

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "backups": [b.to_dict() for b in self.backups]}

    def to_json(self) -> bytes:
        """Compact JSON as Tako writes it: ``version``, then ``backups``; no newline."""
        return _compact(self.to_dict())

    def find(self, backup_id: str) -> BackupInfo | None:
        return next((b for b in self.backups if b.id == backup_id), None)


@dataclass(frozen=True)
class BackupKey:
    """A backup encryption key: ``backup-key-<16 hex>`` and 32 raw bytes."""

    id: str
    key: bytes = field(repr=False)

    @classmethod
    def check_shape(cls, obj: Any) -> dict[str, Any]:
        """Tako's BackupKeyBinding: ``id`` and ``key_base64`` strings (other fields ignored).

        Raises FormatError."""
        return check_fields(obj, "Backup key", {"id": str, "key_base64": str}, ignore_unknown=True)

    @classmethod
    def from_dict(cls, obj: Any) -> BackupKey:
        """Raises FormatError for a malformed key, with Tako's texts where Tako has them (the id
        is ``backup-key-`` + 16 hex characters; the key is 32 bytes)."""
        d = cls.check_shape(obj)
        key_id = d["id"]
        if not key_id.startswith(BACKUP_KEY_PREFIX):
            raise FormatError("Backup key id must start with 'backup-key-'.")
        suffix = key_id[len(BACKUP_KEY_PREFIX):]
        if len(suffix) != 16 or not all(c in string.hexdigits for c in suffix):
            raise FormatError("Backup key id must end with 16 hex characters.")
        try:
            key = base64.b64decode(d["key_base64"], validate=True)
        except (binascii.Error, ValueError):
            raise FormatError(f"Backup key '{key_id}' is not valid base64.") from None
        if len(key) != 32:
            raise FormatError(f"Backup encryption backup key must be 32 bytes, got {len(key)}.")
        return cls(id=key_id, key=key)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "key_base64": base64.b64encode(self.key).decode()}


@dataclass(frozen=True)
class StorageBinding:
    """The S3 storage a backup goes to, with its credentials (``backup.storage`` on the wire).

    ``expires_on`` (``YYYY-MM-DD``) is our optional addition: the day the credentials expire
    (the earlier of the two secrets' dates), so the server can warn before they do. Tako's server
    ignores it; it is left out of the wire shape when unset.
    """

    bucket: str
    endpoint: str
    region: str
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    force_path_style: bool = False
    public_base_url: str | None = None
    provider: str = "s3"
    expires_on: str | None = None

    @classmethod
    def check_shape(cls, obj: Any, what: str = "Backup storage") -> dict[str, Any]:
        """Tako's StorageBinding: ``provider`` (``s3`` or ``local``) and optional strings (or null)
        ``bucket``, ``endpoint``, ``region``, ``access_key_id``, ``secret_access_key``,
        ``public_base_url``, ``path``, ``signing_key``, and the bool ``force_path_style``; other
        fields are ignored (and our ``expires_on``, a string or null, is checked). ``what`` names
        the object in messages. Raises FormatError."""
        d = check_fields(obj, what, {"provider": str}, {
            "bucket": _TEXT_OR_NULL, "endpoint": _TEXT_OR_NULL, "region": _TEXT_OR_NULL,
            "access_key_id": _TEXT_OR_NULL, "secret_access_key": _TEXT_OR_NULL,
            "force_path_style": bool, "public_base_url": _TEXT_OR_NULL, "path": _TEXT_OR_NULL,
            "signing_key": _TEXT_OR_NULL, "expires_on": _TEXT_OR_NULL,
        }, ignore_unknown=True)
        if d["provider"] not in ("s3", "local"):
            raise FormatError(f"{what} field 'provider' must be 's3' or 'local'.")
        return d

    @classmethod
    def from_dict(cls, obj: Any, what: str = "Backup storage") -> StorageBinding:
        """Backup storage as Tako's server checks it, with its texts, in its order: S3, private
        (no ``public_base_url``), then each S3 field present and not blank; then our
        ``expires_on``. ``what`` names the object in messages (``Backup copy storage``).

        Raises FormatError."""
        d = cls.check_shape(obj, what)
        if d["provider"] != "s3":
            raise FormatError(f"{what} must be S3-compatible.")
        if d.get("public_base_url") is not None:
            raise FormatError(f"{what} must be private.")
        for name in _S3_FIELDS:
            value = d.get(name)
            if value is None or not value.strip():
                raise FormatError(f"{what} is missing {name}.")
        expires_on = d.get("expires_on")
        if expires_on is not None and not _is_iso_date(expires_on):
            raise FormatError(f"{what} field 'expires_on' must be a date written YYYY-MM-DD.")
        return cls(
            bucket=d["bucket"], endpoint=d["endpoint"], region=d["region"],
            access_key_id=d["access_key_id"], secret_access_key=d["secret_access_key"],
            force_path_style=d.get("force_path_style", False), expires_on=expires_on,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "provider": self.provider, "bucket": self.bucket, "endpoint": self.endpoint,
            "region": self.region, "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key, "force_path_style": self.force_path_style,
        }
        if self.public_base_url is not None:
            out["public_base_url"] = self.public_base_url
        if self.expires_on is not None:
            out["expires_on"] = self.expires_on
        return out


def _is_iso_date(text: str) -> bool:
    try:
        return len(text) == 10 and dt.date.fromisoformat(text).isoformat() == text
    except ValueError:
        return False


@dataclass(frozen=True)
class BackupBinding:
    """An app's backup settings as sent in ``backup_now``/``deploy`` (the ``backup`` value).

    Tako's fields are ``storage``, ``backup_keys`` and ``retention_days``. Ours are optional and
    left out of the wire shape when unset, so a body without them is byte-identical to Tako's (and
    Tako's server, which ignores unknown fields, keeps its own rule with ``retention_days``):

    - ``policy``: how often and which backups to keep (:class:`~.policy.BackupPolicy`); when it
      is set it replaces ``retention_days`` on our server (the CLI sends ``retention_days`` as the
      policy's days, or 30 for a tiered policy, for Tako's server).
    - ``copy``: the storage of the second copy (another bucket, usually another provider).
    - ``notify``: who is told when something goes wrong (:class:`~.policy.NotifySettings`).
    - ``format``: the archive format new backups are written in (1 or 2; None: the default).
    """

    storage: StorageBinding
    backup_keys: list[BackupKey]
    retention_days: int = DEFAULT_RETENTION_DAYS
    policy: BackupPolicy | None = None
    copy: StorageBinding | None = None
    notify: NotifySettings | None = None
    format: int | None = None

    @classmethod
    def check_shape(cls, obj: Any) -> dict[str, Any]:
        """Tako's BackupBinding as its server parses a request: ``storage`` (required),
        ``backup_keys`` (default none) and ``retention_days`` (0-65535, default 30); other fields
        are ignored (ours, when present, must be of their kind: ``policy``, ``copy`` and
        ``notify`` objects, ``format`` an integer). Returns the fields with the defaults filled in.
        Raises FormatError."""
        d = check_fields(obj, "Backup settings", {"storage": dict},
                         {"backup_keys": list, "retention_days": int, "policy": dict, "copy": dict,
                          "notify": dict, "format": int}, ignore_unknown=True)
        retention = d.setdefault("retention_days", DEFAULT_RETENTION_DAYS)
        if not 0 <= retention <= MAX_RETENTION_DAYS:
            raise FormatError(
                f"Backup settings field 'retention_days' must be an integer from 0 to {MAX_RETENTION_DAYS}.")
        StorageBinding.check_shape(d["storage"])
        for key in d.setdefault("backup_keys", []):
            BackupKey.check_shape(key)
        return d

    @classmethod
    def from_dict(cls, obj: Any) -> BackupBinding:
        """Settings as Tako's server checks them before a backup, with its texts and in its
        order (storage, then at least one key, then each key), then ours (a retention above 0,
        and our optional fields, strictly).

        Raises FormatError (never repeating a secret)."""
        from .policy import BackupPolicy, NotifySettings  # policy builds on this module

        d = cls.check_shape(obj)
        storage = StorageBinding.from_dict(d["storage"])
        if not d["backup_keys"]:
            raise FormatError("Backup encryption key is missing.")
        keys = [BackupKey.from_dict(k) for k in d["backup_keys"]]
        if d["retention_days"] <= 0:
            raise FormatError("Backup settings field 'retention_days' must be above 0.")
        if "format" in d and d["format"] not in ARCHIVE_FORMATS:
            raise FormatError("Backup settings field 'format' must be 1 or 2.")
        copy = StorageBinding.from_dict(d["copy"], "Backup copy storage") if "copy" in d else None
        if copy is not None and (copy.endpoint, copy.bucket) == (storage.endpoint, storage.bucket):
            raise FormatError("Backup settings field 'copy' names the same bucket as 'storage'; the copy "
                              "must go to another bucket.")
        return cls(storage=storage, backup_keys=keys, retention_days=d["retention_days"],
                   policy=BackupPolicy.from_dict(d["policy"]) if "policy" in d else None,
                   copy=copy,
                   notify=NotifySettings.from_dict(d["notify"]) if "notify" in d else None,
                   format=d.get("format"))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"storage": self.storage.to_dict(),
                               "backup_keys": [k.to_dict() for k in self.backup_keys],
                               "retention_days": self.retention_days}
        if self.policy is not None:
            out["policy"] = self.policy.to_dict()
        if self.copy is not None:
            out["copy"] = self.copy.to_dict()
        if self.notify is not None:
            out["notify"] = self.notify.to_dict()
        if self.format is not None:
            out["format"] = self.format
        return out

    @property
    def active_key(self) -> BackupKey:
        """The last key is the one new backups use."""
        return self.backup_keys[-1]

    def key_for(self, key_id: str) -> BackupKey | None:
        return next((k for k in self.backup_keys if k.id == key_id), None)
