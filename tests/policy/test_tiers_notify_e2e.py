"""Tiers and notifications for real: a `tako-server serve` prunes both buckets by the tiers sent
with the settings and says why it keeps each backup; its events reach a loopback receiver,
signed, also after the receiver was down, and the alarms of the first scheduler round (overdue,
expiring credentials) go out at start."""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tako_backups.core import layout
from tako_backups.policy import BackupPolicy
from tako_backups.remote.signing import FileSigner
from tests.policy.support import (
    SECRET,
    call,
    craft_older,
    index_of,
    objects,
    prefix_of,
    put,
    seed_app,
    settings_for,
    storage_of,
)
from tests.support.s3_servers import SeaweedFS
from tests.support.tako_server import RunningServer, restart_server, start_server
from tests.support.waiting import wait_for
from tests.support.webhooks import Receiver

pytestmark = pytest.mark.slow

DAY = 86_400


def day_of(unix: int) -> str:
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%d")


def test_tiers_prune_both_buckets_and_list_says_why(
        server: RunningServer, signer: FileSigner, seaweedfs: SeaweedFS, copy_weed: SeaweedFS,
        primary_bucket: str, copy_bucket: str) -> None:
    name, app = "tiers", "tiers/production"
    seed_app(server, name)
    policy = BackupPolicy(every=3_600, keep_daily=2)
    settings = settings_for(storage_of(seaweedfs, primary_bucket), storage_of(copy_weed, copy_bucket), policy)
    first = call(server, signer, "backup_now", app=app, backup=settings.to_dict())["data"]
    at = first["created_at_unix_secs"]
    both = [(seaweedfs, primary_bucket), (copy_weed, copy_bucket)]
    crafted = [craft_older(both, first, at - days * DAY, f"older{days:03d}") for days in (1, 2, 3, 40)]
    time.sleep(1.1)  # the next backup is strictly newer than the first
    last = call(server, signer, "backup_now", app=app)["data"]

    prefix = prefix_of(name)
    kept_ids = [last["id"], first["id"], crafted[0]["id"]]  # 2 daily + the floor of 3
    for weed, bucket in both:
        assert [b["id"] for b in index_of(weed, bucket, prefix)["backups"]] == kept_ids
        left = objects(weed, bucket, prefix)
        for gone in crafted[1:]:
            assert gone["archive_key"] not in left and gone["manifest_key"] not in left
        assert sorted(k for k in left if k.endswith(layout.ARCHIVE_SUFFIX)) == sorted(
            layout.archive_key(prefix, i) for i in kept_ids)

    why = call(server, signer, "list_backups", app=app, why=True)["data"]["why"]
    today, yesterday = day_of(last["created_at_unix_secs"]), day_of(crafted[0]["created_at_unix_secs"])
    if day_of(first["created_at_unix_secs"]) == today:
        assert why == {last["id"]: [f"daily {today}", "floor"], first["id"]: ["floor"],
                       crafted[0]["id"]: ["floor"]} if yesterday == today else why == {
            last["id"]: [f"daily {today}", "floor"], first["id"]: ["floor"],
            crafted[0]["id"]: [f"daily {yesterday}", "floor"]}
    else:  # the two real backups straddle midnight (UTC): each is its day's newest
        assert why == {last["id"]: [f"daily {today}", "floor"],
                       first["id"]: [f"daily {day_of(first['created_at_unix_secs'])}", "floor"],
                       crafted[0]["id"]: ["floor"]}


def test_a_post_deploy_failure_is_told_and_a_receiver_that_was_down_gets_its_event(
        server: RunningServer, signer: FileSigner, seaweedfs: SeaweedFS, primary_bucket: str,
        receiver: Receiver) -> None:
    name, app = "told", "told/production"
    seed_app(server, name)
    refused = replace(storage_of(seaweedfs, primary_bucket), secret_access_key="not-the-secret")
    finalized = call(server, signer, "deploy", app=app, runtime=None,
                     backup=settings_for(refused, None, webhook=receiver.url).to_dict())["data"]
    assert finalized["backup"]["status"] == "failed"
    wait_for(lambda: receiver.events(SECRET), "the backup_failed webhook", timeout=30)
    [failed] = receiver.events(SECRET)
    assert (failed["event"], failed["app"], failed["server"]) == ("backup_failed", name, "la")
    assert failed["error"].startswith("The post-deploy backup failed: ")
    assert len(receiver.requests) == 1

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    unreachable_copy = replace(storage_of(seaweedfs, "copy-bucket"), endpoint=f"http://127.0.0.1:{port}")
    down_hook = f"http://127.0.0.1:{port}/hook"  # nothing listens there yet either
    settings = settings_for(storage_of(seaweedfs, primary_bucket), unreachable_copy, webhook=down_hook)
    started = time.monotonic()
    reply = call(server, signer, "backup_now", app=app, backup=settings.to_dict())
    assert reply["status"] == "ok" and reply["copy"]["status"] == "failed"
    took = time.monotonic() - started
    late = Receiver(port)  # the receiver comes up: the queued event is retried to it
    try:
        wait_for(lambda: late.events(SECRET), "the retried copy_lagging webhook", timeout=60)
        [event] = late.events(SECRET)
        assert (event["event"], event["backup_id"]) == ("copy_lagging", reply["data"]["id"])
    finally:
        late.stop()
    assert took < 60  # the backup never waited for the receiver
    assert "Cannot connect to storage endpoint" in event["error"]


def test_the_first_scheduler_round_tells_of_overdue_backups_and_expiring_credentials(
        tmp_path: Path, signer: FileSigner, seaweedfs: SeaweedFS, primary_bucket: str,
        receiver: Receiver) -> None:
    running = start_server(tmp_path / "tako", signer)
    try:
        seed_app(running, "late")
        soon = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=5)).isoformat()
        primary = storage_of(seaweedfs, primary_bucket, expires_on=soon)
        settings = settings_for(primary, None, BackupPolicy(every=3_600, keep_last=5), webhook=receiver.url)
        first = call(running, signer, "backup_now", app="late/production", backup=settings.to_dict())["data"]
        old = craft_older([(seaweedfs, primary_bucket)], first, first["created_at_unix_secs"] - 10 * 3_600,
                          "tenhours")
    finally:
        assert running.terminate() == 0
    # While the server is down, its only backup becomes one taken 10 h ago (every 1 h).
    client = seaweedfs.client()
    client.delete_object(Bucket=primary_bucket, Key=first["archive_key"])
    client.delete_object(Bucket=primary_bucket, Key=first["manifest_key"])
    put(seaweedfs, primary_bucket, f"{prefix_of('late')}index.json",
        json.dumps({"version": 1, "backups": [old]}).encode())
    receiver.requests.clear()
    running = restart_server(tmp_path / "tako", signer)
    try:
        wait_for(lambda: {"backup_overdue", "credentials_expiring"} <= {
            e["event"] for e in receiver.events(SECRET)}, "the alarms of the first round", timeout=60)
        events = {e["event"]: e for e in receiver.events(SECRET)}
        assert events["backup_overdue"]["backup_id"] == old["id"]
        assert events["backup_overdue"]["error"].startswith("No good backup for more than 2.5 hours")
        assert events["credentials_expiring"]["error"] == (
            f"The credentials of the backup storage (bucket {primary_bucket}) expire on {soon}; renew them "
            "with `tako storages credentials` and deploy.")
        listed = lambda: call(running, signer, "list_backups", app="late/production")["data"]  # noqa: E731
        wait_for(lambda: len(listed()["backups"]) == 2, "the scheduled catch-up backup", timeout=60)
    finally:
        assert running.terminate() == 0
