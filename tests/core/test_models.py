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


STORAGE = {"provider": "s3", "bucket": "b", "endpoint": "https://x", "region": "r",
           "access_key_id": "a", "secret_access_key": "s", "force_path_style": False}
KEY = {"id": "backup-key-0123456789ABCDEF", "key_base64": base64.b64encode(b"\x07" * 32).decode()}


def test_backup_settings_read_as_takos_server_reads_them() -> None:
    """Unknown fields are ignored at every level, Tako's defaults fill what is left out."""
    settings = {"storage": {**STORAGE, "path": None, "signing_key": None, "future": {"x": 1}},
                "backup_keys": [{**KEY, "created": "2026-01-01"}], "someday": True}
    del settings["storage"]["force_path_style"]  # type: ignore[attr-defined]
    binding = BackupBinding.from_dict(settings)
    assert (binding.retention_days, binding.storage.force_path_style, binding.active_key.id) == (
        30, False, "backup-key-0123456789ABCDEF")
    assert BackupBinding.check_shape({"storage": {"provider": "local"}}) == {
        "storage": {"provider": "local"}, "backup_keys": [], "retention_days": 30}


@pytest.mark.parametrize(("change", "message"), [
    ({"storage": {**STORAGE, "provider": "local"}}, "Backup storage must be S3-compatible."),
    ({"storage": {**STORAGE, "public_base_url": "https://cdn"}}, "Backup storage must be private."),
    ({"storage": {**STORAGE, "bucket": None}}, "Backup storage is missing bucket."),
    ({"storage": {k: v for k, v in STORAGE.items() if k != "endpoint"}},
     "Backup storage is missing endpoint."),
    ({"storage": {**STORAGE, "region": "  "}}, "Backup storage is missing region."),
    ({"storage": {**STORAGE, "access_key_id": ""}}, "Backup storage is missing access_key_id."),
    ({"storage": {**STORAGE, "secret_access_key": None}}, "Backup storage is missing secret_access_key."),
    ({"backup_keys": []}, "Backup encryption key is missing."),
    ({"backup_keys": [{**KEY, "id": "k"}]}, "Backup key id must start with 'backup-key-'."),
    ({"backup_keys": [{**KEY, "id": "backup-key-0123"}]}, "Backup key id must end with 16 hex characters."),
    ({"backup_keys": [{**KEY, "id": "backup-key-0123456789abcdeg"}]},
     "Backup key id must end with 16 hex characters."),
    ({"backup_keys": [{**KEY, "key_base64": "AAAA"}]},
     "Backup encryption backup key must be 32 bytes, got 3."),
    ({"backup_keys": [{**KEY, "key_base64": "!!"}]},
     "Backup key 'backup-key-0123456789ABCDEF' is not valid base64."),
    ({"retention_days": 0}, "Backup settings field 'retention_days' must be above 0."),
    # Tako's order: the storage first, then the keys.
    ({"storage": {**STORAGE, "bucket": ""}, "backup_keys": []}, "Backup storage is missing bucket."),
])
def test_backup_settings_are_checked_with_takos_texts(change: dict, message: str) -> None:
    with pytest.raises(FormatError) as refused:
        BackupBinding.from_dict({"storage": STORAGE, "backup_keys": [KEY], "retention_days": 30, **change})
    assert str(refused.value) == message


@pytest.mark.parametrize(("settings", "message"), [
    ({}, "Backup settings is missing field 'storage'."),
    ({"storage": None}, "Backup settings field 'storage' has the wrong type."),
    ({"storage": {"bucket": "b"}}, "Backup storage is missing field 'provider'."),
    ({"storage": {"provider": "gcs"}}, "Backup storage field 'provider' must be 's3' or 'local'."),
    ({"storage": {"provider": "s3", "force_path_style": None}},
     "Backup storage field 'force_path_style' has the wrong type."),
    ({"storage": STORAGE, "backup_keys": None}, "Backup settings field 'backup_keys' has the wrong type."),
    ({"storage": STORAGE, "backup_keys": [{"id": "backup-key-0123456789abcdef"}]},
     "Backup key is missing field 'key_base64'."),
    ({"storage": STORAGE, "retention_days": 65536},
     "Backup settings field 'retention_days' must be an integer from 0 to 65535."),
    ({"storage": STORAGE, "retention_days": -1},
     "Backup settings field 'retention_days' must be an integer from 0 to 65535."),
    ({"storage": STORAGE, "retention_days": 30.0},
     "Backup settings field 'retention_days' has the wrong type."),
])
def test_backup_settings_shape_is_takos_serde_shape(settings: dict, message: str) -> None:
    with pytest.raises(FormatError) as refused:
        BackupBinding.check_shape(settings)
    assert str(refused.value) == message


def test_manifest_extras_round_trip_and_stay_optional() -> None:
    extras = {"files": 3, "bytes": 120, "sqlite_files": ["app/app.db"], "reason": "pre-restore"}
    info = BackupInfo.from_dict({**MANIFEST, "extras": extras})
    assert info.extras is not None and info.extras.reason == "pre-restore"
    assert json.loads(info.to_json()) == {**MANIFEST, "extras": extras}
    assert "extras" not in BackupInfo.from_dict(MANIFEST).to_dict()
    with pytest.raises(FormatError, match="extras is missing field 'reason'"):
        BackupInfo.from_dict({**MANIFEST, "extras": {"files": 1, "bytes": 1, "sqlite_files": []}})


BINDING = {
    "storage": {"provider": "s3", "bucket": "backups", "endpoint": "https://s3.example.net", "region": "auto",
                "access_key_id": "AKIA", "secret_access_key": "s3cr3t", "force_path_style": False},
    "backup_keys": [{"id": "backup-key-0123456789abcdef",
                     "key_base64": base64.b64encode(b"k" * 32).decode()}],
    "retention_days": 30,
}
COPY = {**BINDING["storage"], "bucket": "backups-copy", "endpoint": "https://r2.example.com",
        "expires_on": "2027-01-31"}


def test_a_binding_without_our_settings_is_byte_identical_to_tako() -> None:
    binding = BackupBinding.from_dict(BINDING)
    assert (binding.policy, binding.copy, binding.notify, binding.format) == (None, None, None, None)
    assert json.dumps(binding.to_dict()) == json.dumps(BINDING)


def test_our_settings_ride_in_the_binding_and_round_trip() -> None:
    extended = {**BINDING, "retention_days": 30,
                "policy": {"every_seconds": 3600, "keep_hourly": 24, "keep_daily": 30},
                "copy": COPY, "notify": {"webhook_url": "https://hooks.example.com/t",
                                         "webhook_secret": "0123456789abcdef0123"},
                "format": 2}
    binding = BackupBinding.from_dict(extended)
    assert binding.policy is not None and binding.policy.describe() == "every 1h, keeps 24 hourly, 30 daily"
    assert binding.copy is not None and (binding.copy.bucket, binding.copy.expires_on) == ("backups-copy",
                                                                                           "2027-01-31")
    assert binding.notify is not None and binding.notify.signed and binding.format == 2
    assert binding.to_dict() == extended
    assert "s3cr3t" not in repr(binding.copy)


@pytest.mark.parametrize(("change", "message"), [
    ({"format": 3}, "Backup settings field 'format' must be 1 or 2."),
    ({"copy": BINDING["storage"]}, "Backup settings field 'copy' names the same bucket as 'storage'"),
    ({"copy": {**COPY, "expires_on": "31.01.2027"}},
     "Backup copy storage field 'expires_on' must be a date written YYYY-MM-DD."),
    ({"copy": {**COPY, "provider": "local"}}, "Backup copy storage must be S3-compatible."),
    ({"copy": {**COPY, "bucket": " "}}, "Backup copy storage is missing bucket."),
    ({"copy": "spare"}, "Backup settings field 'copy' has the wrong type."),
    ({"policy": {"every_seconds": 60, "retention_days": 7}},
     "Backup policy field 'every_seconds' must be between 15m and 24h"),
    ({"notify": {"webhook_url": "http://hooks.example.com/"}}, "must use https://"),
])
def test_our_settings_are_parsed_strictly(change: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(FormatError) as caught:
        BackupBinding.from_dict({**BINDING, **change})
    assert message in str(caught.value)
    assert "s3cr3t" not in str(caught.value)
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
