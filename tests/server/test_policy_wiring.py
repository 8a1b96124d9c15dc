"""Backup frequency and tiered retention wired into the server: settings sent with the backup
binding, the schedule following ``every`` (catching up once), pruning by tiers in both buckets,
``list_backups`` with reasons and ``backup_status`` with the policy text."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tako_backups.core import layout
from tako_backups.errors import StorageError
from tako_backups.policy import BackupPolicy
from tako_backups.remote.signing import FileSigner
from tako_backups.server.app import create_app
from tako_backups.server.auth import RequestAuth
from tako_backups.server.paths import ServerPaths
from tako_backups.server.scheduler import Scheduler
from tests.server.helpers import APP, body, signed
from tests.server.policy_support import HOUR, NOW, Bucket, Clock, extended, make_service, seed
from tests.support.asgi import AsgiClient
from tests.support.keys import new_backup_key

PREFIX = layout.backup_prefix("demo", "production", "la")
DAY = 24 * HOUR
TIERS = BackupPolicy(every=HOUR, keep_hourly=3, keep_daily=2)


@pytest.fixture
def buckets() -> dict[str, Bucket]:
    return {"main": Bucket(), "spare": Bucket()}


def rpc(client: AsgiClient, signer: FileSigner, command: str, **fields: object) -> dict:  # type: ignore[type-arg]
    data = body(command, **fields)
    reply = client.post("/rpc", content=data, headers=signed(signer, data))
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


def archives(bucket: Bucket) -> list[str]:
    return sorted(k[len(PREFIX):-len(".tar.zst.enc")] for k in bucket.objects if k.endswith(".tar.zst.enc"))


def test_tiers_sent_with_the_settings_prune_both_buckets_and_say_why(
        paths: ServerPaths, signer: FileSigner, buckets: dict[str, Bucket]) -> None:
    clock = Clock()
    service = make_service(paths, buckets, clock)
    client = AsgiClient(create_app(service, RequestAuth.from_file(paths.authorized_keys)))
    seed(paths)
    settings = extended(TIERS)
    assert settings.to_dict()["retention_days"] == 30  # what Tako's server would keep by
    taken = []
    for at in (NOW, NOW + HOUR, NOW + 2 * HOUR, NOW + 3 * HOUR, NOW + DAY):
        clock.now = at
        reply = rpc(client, signer, "backup_now", app=APP, backup=settings.to_dict() if not taken else None)
        assert reply["copy"] == {"bucket": "spare", "status": "ok", "state": "ok"}
        taken.append(reply["data"]["id"])
    kept = [taken[4], taken[3], taken[2]]  # 3 hourly, 2 daily, floor 3
    for bucket in buckets.values():
        assert archives(bucket) == sorted(kept)
        assert [b["id"] for b in json.loads(bucket.objects[f"{PREFIX}index.json"])["backups"]] == kept

    listed = rpc(client, signer, "list_backups", app=APP, why=True)["data"]
    assert listed["why"] == {
        taken[4]: ["hourly 2026-12-02T10", "daily 2026-12-02", "floor"],
        taken[3]: ["hourly 2026-12-01T13", "daily 2026-12-01", "floor"],
        taken[2]: ["hourly 2026-12-01T12", "floor"],
    }
    assert listed["copy"]["state"] == "ok" and listed["copy"]["missing"] == []
    assert "why" not in rpc(client, signer, "list_backups", app=APP)["data"]

    status = rpc(client, signer, "backup_status", app=APP)["data"]
    assert status["policy_text"] == "every 1h, keeps 3 hourly, 2 daily"
    assert status["policy"] == {"every_seconds": 3600, "keep_hourly": 3, "keep_daily": 2}
    assert status["next_backup_at_unix_secs"] == NOW + DAY + HOUR
    assert (status["overdue"], status["overdue_after_seconds"]) == (False, 5_400 + 3_600)
    assert "notify" not in status


def test_the_schedule_follows_every_and_catches_up_once(paths: ServerPaths,
                                                        buckets: dict[str, Bucket]) -> None:
    clock = Clock()
    service = make_service(paths, buckets, clock)
    seed(paths)
    service.backup_now(APP, extended(BackupPolicy(every=15 * 60, retention_days=7), copy=False))
    scheduler = Scheduler(service, clock=clock)
    clock.now = NOW + 15 * 60 - 1
    assert scheduler.run_once() == []
    clock.now = NOW + 15 * 60
    [one] = scheduler.run_once()
    assert one.created_at_unix_secs == NOW + 15 * 60
    clock.now = NOW + 15 * 60 + 5 * HOUR  # the server was down for 5 hours: one backup, not 20
    [caught_up] = scheduler.run_once()
    assert scheduler.run_once() == []
    assert caught_up.created_at_unix_secs == clock.now
    assert len(service.list_backups(APP)["backups"]) == 3


def test_a_pre_restore_backup_does_not_move_the_schedule(paths: ServerPaths,
                                                         buckets: dict[str, Bucket]) -> None:
    clock = Clock()
    service = make_service(paths, buckets, clock)
    seed(paths)
    settings = extended(BackupPolicy(every=HOUR, keep_last=5), copy=False)
    service.backup_now(APP, settings)
    clock.now = NOW + HOUR - 60
    with service.locks.hold(APP):  # what a restore uploads of the data it replaced
        service.runs.take(APP, settings, "pre-restore")
    clock.now = NOW + HOUR
    assert service.is_due(APP, int(clock.now))
    status = service.backup_status(APP)
    assert status["next_backup_at_unix_secs"] == NOW + HOUR
    assert status["last_backup"]["extras"]["reason"] == "pre-restore"


def test_the_age_rule_stays_tako_s_without_a_policy(paths: ServerPaths, buckets: dict[str, Bucket]) -> None:
    clock = Clock()
    service = make_service(paths, buckets, clock)
    seed(paths)
    settings = extended(None, copy=False)
    assert "policy" not in settings.to_dict()
    ids = []
    for n in range(5):
        clock.now = NOW + n * 10 * DAY
        ids.append(service.backup_now(APP, settings if n == 0 else None)["id"])
    assert archives(buckets["main"]) == sorted(ids[1:])  # 30 days from the newest, floor of 3
    status = service.backup_status(APP)
    assert "policy_text" not in status and status["retention_days"] == 30
    why = service.list_backups(APP, why=True)["why"]
    assert why[ids[4]] == ["within 30 days", "floor"] and why[ids[1]] == ["within 30 days"]


def test_reencryption_happens_in_the_copy_too(paths: ServerPaths, buckets: dict[str, Bucket]) -> None:
    clock = Clock()
    service = make_service(paths, buckets, clock)
    seed(paths)
    settings = extended(TIERS)
    old = [service.backup_now(APP, settings if n == 0 else None) for n in range(2)]
    rotated = replace(settings, backup_keys=[*settings.backup_keys, new_backup_key()])
    done = service.reencrypt_backups(APP, rotated)
    new_ids = sorted(d["to"] for d in done["reencrypted"])
    assert len(new_ids) == 2
    for bucket in buckets.values():
        assert archives(bucket) == new_ids
        index = json.loads(bucket.objects[f"{PREFIX}index.json"])
        assert sorted(b["id"] for b in index["backups"]) == new_ids
        assert {b["encryption"]["key_id"] for b in index["backups"]} == {rotated.active_key.id}
    assert buckets["spare"].objects == buckets["main"].objects
    assert service.backup_status(APP)["copy"]["state"] == "ok"
    assert not set(new_ids) & {b["id"] for b in old}


def test_a_lagging_copy_catches_up_at_the_next_scheduled_backup(paths: ServerPaths,
                                                                 buckets: dict[str, Bucket]) -> None:
    clock = Clock()
    service = make_service(paths, buckets, clock)
    seed(paths)
    first = service.backup_now(APP, extended(TIERS))
    buckets["spare"].down = True
    clock.now += HOUR
    lagging = service.backup_now_reply(APP, None)
    assert lagging.extra["copy"]["status"] == "failed"
    assert service.backup_status(APP)["copy"]["missing"] == [lagging.data["id"]]
    clock.now += HOUR
    with pytest.raises(StorageError):  # still down: `tako backups sync` says so
        service.copies.sync(APP)
    buckets["spare"].down = False
    clock.now += HOUR
    newest = service.scheduled_backup(APP)  # syncs the copy first, then backs up to both
    ids = sorted([first["id"], lagging.data["id"], newest.id])
    assert archives(buckets["spare"]) == archives(buckets["main"]) == ids
    status = service.backup_status(APP)
    assert (status["copy"]["state"], status["copy"]["missing"], status["copy"]["error"]) == ("ok", [], None)
