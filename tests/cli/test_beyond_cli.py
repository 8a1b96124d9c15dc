"""What the CLI shows of tiers, the backup copy and notifications, against in-process tako-servers
whose settings carry them (tests/cli/remote_harness): status with the policy text, the copy's
state and who is told; ``list --why``; ``sync``; ``notify test``; downloads, restores and drills
that fell back to the copy and say so."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tako_backups.cli.output import format_local_time
from tako_backups.models import BackupBinding, StorageBinding
from tako_backups.policy import BackupPolicy, NotifySettings
from tako_backups.server.service import BackupService
from tests.cli.remote_harness import APP, NOW, Demo, Fleet, LinkedStore, Tako
from tests.support.webhooks import Receiver

HEAD = "Backups\ndemo (production)\n"
POLICY = BackupPolicy(every=3_600, keep_hourly=24, keep_daily=30, keep_monthly=12)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.stop()


@pytest.fixture
def fleet(demo: Demo) -> Fleet:
    fleet = demo("la")
    fleet.other_buckets["spare"] = LinkedStore("http://127.0.0.1:9/spare/")
    return fleet


def with_extensions(service: BackupService, *, notify: NotifySettings | None = None,
                    copy: bool = True) -> BackupBinding:
    """The settings `tako backups now` stored, plus a policy, a copy and notify (as the CLI sends
    them from tako-backups.toml)."""
    base = service.backups.settings(APP)
    spare = StorageBinding(bucket="spare", endpoint="https://copy.example.net", region="auto",
                           access_key_id="AKIACOPY", secret_access_key="copy-secret-never-shown")
    settings = BackupBinding(storage=base.storage, backup_keys=base.backup_keys, retention_days=30,
                             policy=POLICY, copy=spare if copy else None, notify=notify)
    service.backups.store_settings(APP, settings)
    return settings


def first_backup(tako: Tako, fleet: Fleet) -> BackupService:
    assert tako("backups", "now", "--env", "production").exit_code == 0
    return fleet.services["la"]


def test_status_shows_the_policy_the_copy_and_who_is_told(fleet: Fleet, tako: Tako,
                                                          receiver: Receiver) -> None:
    service = first_backup(tako, fleet)
    with_extensions(service, notify=NotifySettings(webhook_url=receiver.url, webhook_secret="s" * 20))
    fleet.clock = NOW + 60
    info = service.backup_now(APP, None)
    lagging = tako("backups", "status", "--env", "production")  # the first backup went to no copy
    assert lagging.stderr == ("! la: copy in bucket spare is lagging: 1 backup missing; it catches "
                              "up at the next scheduled backup, or run `tako backups sync`.\n")
    service.sync_copies(APP)
    result = tako("backups", "status", "--env", "production")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"{HEAD}la: enabled, last {info['id']} at {format_local_time(NOW + 60)}, next "
        f"{format_local_time(NOW + 3_660)}, every 1h, keeps 24 hourly, 30 daily, 12 monthly\n"
        f"la: notifications to webhook http://127.0.0.1:{receiver.port}/… (signed)\n"
        f"la: copy in bucket spare: up to date (as of {format_local_time(NOW + 60)})\n")
    assert result.stderr == ""
    data = json.loads(tako("backups", "status", "--env", "production", "--json").stdout)
    status = data["results"][0]["status"]
    assert status["policy_text"] == "every 1h, keeps 24 hourly, 30 daily, 12 monthly"
    assert status["copy"]["state"] == "ok" and status["notify"]["signed"] is True
    assert "copy-secret" not in result.output + json.dumps(data)


def test_a_lagging_copy_warns_and_sync_brings_it_up_to_date(fleet: Fleet, tako: Tako) -> None:
    service = first_backup(tako, fleet)
    with_extensions(service)
    fleet.other_buckets["spare"].fail_writes = True
    info = service.backup_now(APP, None)
    listed = tako("backups", "list", "--env", "production")
    assert listed.exit_code == 0, listed.output
    assert f"{info['id']} " in listed.stdout and listed.stdout.splitlines()[2].endswith("copy: missing")
    assert listed.stderr.startswith("! la: copy in bucket spare is lagging: 2 backups missing "
                                    "(last error: Uploading the copy failed: Upload failed: the bucket is "
                                    "read-only.); it catches up at the next scheduled backup, or run "
                                    "`tako backups sync`.")
    fleet.other_buckets["spare"].fail_writes = False
    synced = tako("backups", "sync", "--env", "production")
    assert synced.exit_code == 0, synced.output
    assert synced.stdout == f"{HEAD}la: copied 2 backups to bucket spare (0 already there)\n"
    assert fleet.requests[-1][1] == {"command": "sync_copies", "app": APP}
    assert [line.rsplit("  ", 1)[-1] for line in tako("backups", "list", "--env", "production").stdout
            .splitlines()[2:4]] == ["copy: yes", "copy: yes"]
    status = tako("backups", "status", "--env", "production")
    assert status.stderr == "" and "la: copy in bucket spare: up to date" in status.stdout


def test_list_why_says_why_each_backup_is_kept(fleet: Fleet, tako: Tako) -> None:
    service = first_backup(tako, fleet)
    with_extensions(service, copy=False)
    fleet.clock = NOW + 3_600
    newer = service.backup_now(APP, None)
    result = tako("backups", "list", "--env", "production", "--why")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()[2:]
    assert lines[0].startswith(newer["id"]) and lines[0].endswith(
        "  kept: hourly 2025-10-09T09, daily 2025-10-09, monthly 2025-10, floor")
    assert lines[1].endswith(  # restic keeps the oldest while a tier has counts left
        "  kept: hourly 2025-10-09T08, oldest daily 2025-10-09, oldest monthly 2025-10, floor")
    assert fleet.requests[-1][1] == {"command": "list_backups", "app": APP, "why": True}
    data = json.loads(tako("backups", "list", "--env", "production", "--why", "--json").stdout)
    assert data["results"][0]["why"][newer["id"]] == ["hourly 2025-10-09T09", "daily 2025-10-09",
                                                      "monthly 2025-10", "floor"]
    plain = tako("backups", "list", "--env", "production")
    assert "kept:" not in plain.stdout and fleet.requests[-1][1] == {"command": "list_backups", "app": APP}


def test_notify_test_reports_each_target(fleet: Fleet, tako: Tako, receiver: Receiver) -> None:
    service = first_backup(tako, fleet)
    refused = tako("backups", "notify", "test", "--env", "production")
    assert refused.exit_code == 1 and "has no notification settings on this server" in refused.stderr
    with_extensions(service, notify=NotifySettings(webhook_url=receiver.url,
                                                   command=("/bin/sh", "-c", "exit 4")), copy=False)
    result = tako("backups", "notify", "test", "--env", "production")
    assert result.exit_code == 1
    assert result.stdout == f"{HEAD}la: webhook http://127.0.0.1:{receiver.port}/…: delivered\n"
    assert result.stderr == ("! la: command /bin/sh …: failed (exit 4)\n"
                             "error: 1 test notification could not be delivered.\n")
    assert [e["event"] for e in receiver.events()] == ["test"]


def test_download_restore_and_drill_fall_back_to_the_copy_and_say_so(fleet: Fleet, tako: Tako,
                                                                     tmp_path: object) -> None:
    service = first_backup(tako, fleet)
    with_extensions(service)
    info = service.backup_now(APP, None)
    fleet.store.tamper = lambda data: data[:-1] + bytes([data[-1] ^ 1])  # the primary serves damaged bytes
    out = f"{tmp_path}/b.tar.zst.enc"
    result = tako("backups", "download", info["id"], "--env", "production", "--output", out)
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("! The download from the primary (bucket demo-backups) failed: "
                                    "Downloaded backup checksum did not match manifest. Trying the copy.\n")
    assert "Downloaded from the copy (bucket spare)" in result.stdout
    assert fleet.requests[-1][1] == {"command": "backup_download_url", "app": APP, "backup_id": info["id"],
                                     "source": "copy"}

    for key in [k for k in fleet.store.objects if k.startswith("_tako/backups/demo/production/la/")]:
        del fleet.store.objects[key]  # the primary bucket is wiped
    restored = tako("backups", "restore", info["id"], "--env", "production", "--yes", "--no-safety-backup")
    assert restored.exit_code == 0, restored.output
    assert restored.stderr == (f"! Read the backup from the copy (bucket spare): primary "
                               f"(bucket demo-backups): Backup not found: {info['id']}\n")
    drilled = tako("backups", "drill", info["id"], "--env", "production")
    assert drilled.exit_code == 0, drilled.output
    assert drilled.stdout.endswith("recovery, read from the copy)\n")


COPY_RESOURCE = ('\n[storages.backups-copy]\nbucket = "spare"\nendpoint = "https://copy.example.net"\n'
                 'region = "auto"\n')


def test_now_sends_the_settings_file_and_tako_s_shape_without_it(fleet: Fleet, tako: Tako,
                                                                   receiver: Receiver) -> None:
    plain = tako("backups", "now", "--env", "production")
    assert plain.exit_code == 0, plain.output
    assert list(fleet.requests[-1][1]["backup"]) == ["storage", "backup_keys", "retention_days"]
    assert "expires_on" not in fleet.requests[-1][1]["backup"]["storage"]

    with open("tako.toml", "a") as f:
        f.write(COPY_RESOURCE)
    Path("tako-backups.toml").write_text(
        '[envs.production]\nevery = "1h"\nkeep_hourly = 24\nkeep_daily = 7\ncopy_to = "backups-copy"\n\n'
        f'[envs.production.notify]\nwebhook = "{receiver.url}"\n')
    creds = tako("storages", "credentials", "backups-copy", "--env", "production", "--access-key-id",
                 "AKIACOPY", "--secret-access-key", "copy-secret-never-shown", "--expires-on", "2027-01-31")
    assert creds.exit_code == 0, creds.output
    signed = tako("backups", "notify", "secret", "--env", "production", input="whsec-0123456789abcdef\n")
    assert signed.exit_code == 0, signed.output
    assert "copy-secret" not in Path(".tako/secrets.json").read_text()

    fleet.clock = NOW + 60
    now = tako("backups", "now", "--env", "production")
    assert now.exit_code == 0, now.output
    sent = fleet.requests[-1][1]["backup"]
    assert sent["retention_days"] == 30  # what Tako's server keeps by
    assert sent["policy"] == {"every_seconds": 3600, "keep_hourly": 24, "keep_daily": 7}
    assert (sent["copy"]["bucket"], sent["copy"]["access_key_id"], sent["copy"]["expires_on"]) == (
        "spare", "AKIACOPY", "2027-01-31")
    assert "expires_on" not in sent["storage"]  # the primary's credentials never expire
    assert sent["notify"] == {"webhook_url": receiver.url, "webhook_secret": "whsec-0123456789abcdef"}
    assert now.stdout.endswith("la: copied to bucket spare (older backups are still missing there)\n")
    assert "copy-secret" not in now.output and "whsec" not in now.output

    status = tako("backups", "status", "--env", "production")
    assert "every 1h, keeps 24 hourly, 7 daily" in status.stdout
    tested = tako("backups", "notify", "test", "--env", "production")
    assert tested.exit_code == 0, tested.output
    assert fleet.requests[-1][1]["notify"] == sent["notify"]  # the local settings, tried as they are
    [event] = receiver.events("whsec-0123456789abcdef")
    assert event["event"] == "test"
