from __future__ import annotations

import base64
import json

import pytest

from tako_backups.errors import FormatError
from tako_backups.models import BackupBinding, BackupIndex, BackupInfo

MANIFEST = {
    "id": "b1710000000-AbCdEf12", "app": "demo", "environment": "production", "server": "la.1",
    "created_at_unix_secs": 1710000000, "size_bytes": 1234, "sha256_hex": "ab" * 32,
    "archive_key": "_tako/backups/demo/production/la-1/b1710000000-AbCdEf12.tar.zst.enc",
    "manifest_key": "_tako/backups/demo/production/la-1/b1710000000-AbCdEf12.json",
    "encryption": {"algorithm": "aes-256-gcm", "key_id": "backup-key-0123456789abcdef",
                   "nonce_base64": "AAAAAAAAAAAAAAAA", "tag_base64": "AAAAAAAAAAAAAAAAAAAAAA=="},
}


def test_manifest_round_trips_exactly() -> None:
    info = BackupInfo.from_json(json.dumps(MANIFEST))
    assert json.loads(info.to_json()) == MANIFEST
    assert list(json.loads(info.to_json())) == list(MANIFEST)


def test_manifest_missing_field_is_named() -> None:
    bad = dict(MANIFEST)
    del bad["sha256_hex"]
    with pytest.raises(FormatError, match="Backup manifest is missing field 'sha256_hex'."):
        BackupInfo.from_dict(bad)


def test_manifest_unknown_field_is_named() -> None:
    with pytest.raises(FormatError, match="Backup manifest has unknown field 'extra'."):
        BackupInfo.from_dict({**MANIFEST, "extra": 1})


def test_manifest_wrong_type_and_bad_algorithm() -> None:
    with pytest.raises(FormatError, match="field 'size_bytes' has the wrong type"):
        BackupInfo.from_dict({**MANIFEST, "size_bytes": "12"})
    enc = {**MANIFEST["encryption"], "algorithm": "chacha20"}
    with pytest.raises(FormatError, match="unsupported algorithm 'chacha20'"):
        BackupInfo.from_dict({**MANIFEST, "encryption": enc})


def test_malformed_json_is_a_format_error() -> None:
    with pytest.raises(FormatError, match="Backup index is not valid JSON"):
        BackupIndex.from_json(b"{not json")


def test_index_sorts_newest_first_by_time_then_id() -> None:
    older = {**MANIFEST, "id": "b1710000000-AAAAAAAA", "created_at_unix_secs": 1710000000}
    same_time = {**MANIFEST, "id": "b1710000000-BBBBBBBB", "created_at_unix_secs": 1710000000}
    newer = {**MANIFEST, "id": "b1720000000-AAAAAAAA", "created_at_unix_secs": 1720000000}
    index = BackupIndex.from_dict({"version": 1, "backups": [older, newer, same_time]})
    assert [b.id for b in index.backups] == [newer["id"], same_time["id"], older["id"]]
    assert json.loads(index.to_json())["version"] == 1


def test_index_version_must_be_1() -> None:
    with pytest.raises(FormatError, match="unsupported version 2"):
        BackupIndex.from_dict({"version": 2, "backups": []})


def test_backup_settings_parse_and_hide_secrets() -> None:
    settings = {
        "storage": {"provider": "s3", "bucket": "b", "endpoint": "https://s3.example.com",
                    "region": "auto", "access_key_id": "AKIDSECRETID",
                    "secret_access_key": "VERYSECRETVALUE", "force_path_style": True},
        "backup_keys": [{"id": "backup-key-0123456789abcdef", "key_base64": "A" * 43 + "="},
                        {"id": "backup-key-1111111111111111",
                         "key_base64": base64.b64encode(b"\x05" * 32).decode()}],
        "retention_days": 30,
    }
    binding = BackupBinding.from_dict(settings)
    assert binding.active_key.id == "backup-key-1111111111111111"
    assert binding.to_dict() == settings
    assert "VERYSECRETVALUE" not in repr(binding) and "AKIDSECRETID" not in repr(binding)
    assert "key_base64" not in repr(binding) and "BQUF" not in repr(binding)


def test_backup_settings_reject_short_key_and_no_keys() -> None:
    base = {"storage": {"provider": "s3", "bucket": "b", "endpoint": "https://x", "region": "r",
                        "access_key_id": "a", "secret_access_key": "s", "force_path_style": False},
            "retention_days": 30}
    with pytest.raises(FormatError, match="must be 32 bytes, not 3"):
        BackupBinding.from_dict({**base, "backup_keys": [{"id": "k", "key_base64": "AAAA"}]})
    with pytest.raises(FormatError, match="need at least one backup key"):
        BackupBinding.from_dict({**base, "backup_keys": []})


def test_manifest_extras_round_trip_and_stay_optional() -> None:
    extras = {"files": 3, "bytes": 120, "sqlite_files": ["app/app.db"], "reason": "pre-restore"}
    info = BackupInfo.from_dict({**MANIFEST, "extras": extras})
    assert info.extras is not None and info.extras.reason == "pre-restore"
    assert json.loads(info.to_json()) == {**MANIFEST, "extras": extras}
    assert "extras" not in BackupInfo.from_dict(MANIFEST).to_dict()
    with pytest.raises(FormatError, match="extras is missing field 'reason'"):
        BackupInfo.from_dict({**MANIFEST, "extras": {"files": 1, "bytes": 1, "sqlite_files": []}})


def test_manifest_and_index_are_written_as_compact_json_like_tako() -> None:
    info = BackupInfo.from_dict(MANIFEST)
    expected = (
        '{"id":"b1710000000-AbCdEf12","app":"demo","environment":"production","server":"la.1",'
        '"created_at_unix_secs":1710000000,"size_bytes":1234,"sha256_hex":"' + "ab" * 32 + '",'
        '"archive_key":"_tako/backups/demo/production/la-1/b1710000000-AbCdEf12.tar.zst.enc",'
        '"manifest_key":"_tako/backups/demo/production/la-1/b1710000000-AbCdEf12.json",'
        '"encryption":{"algorithm":"aes-256-gcm","key_id":"backup-key-0123456789abcdef",'
        '"nonce_base64":"AAAAAAAAAAAAAAAA","tag_base64":"AAAAAAAAAAAAAAAAAAAAAA=="}}'
    ).encode()
    assert info.to_json() == expected
    assert BackupIndex(backups=[info]).to_json() == b'{"version":1,"backups":[' + expected + b"]}"
    assert BackupIndex().to_json() == b'{"version":1,"backups":[]}'
    indented = json.dumps({"version": 1, "backups": [MANIFEST]}, indent=2) + "\n"
    assert BackupIndex.from_json(indented).backups == [info]
