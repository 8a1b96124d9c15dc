"""Someone is told: the server's events (failed scheduled and post-deploy backups, failed drills,
a lagging copy, overdue backups, expiring credentials) reach a real webhook receiver on 127.0.0.1,
signed; a receiver that is down never holds a backup up; ``notify_test``."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tako_backups.errors import NotFoundError, StorageError
from tako_backups.policy import BackupPolicy, NotifySettings
from tako_backups.remote.signing import FileSigner
from tako_backups.server.app import create_app
from tako_backups.server.auth import RequestAuth
from tako_backups.server.notify import Notifier
from tako_backups.server.paths import ServerPaths
from tako_backups.server.service import BackupService
from tests.server.helpers import APP, body, signed
from tests.server.policy_support import HOUR, NOW, SECRET, Bucket, Clock, extended, make_service, seed
from tests.support.asgi import AsgiClient
from tests.support.webhooks import Receiver

EVERY = BackupPolicy(every=HOUR, keep_last=10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture
def notifier() -> Iterator[Notifier]:
    sender = Notifier(first_delay=0.05, max_delay=0.2, timeout=2, command_timeout=5)
    yield sender
    sender.close()


@pytest.fixture
def buckets() -> dict[str, Bucket]:
    return {"main": Bucket(), "spare": Bucket()}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(paths: ServerPaths, buckets: dict[str, Bucket], clock: Clock,
            notifier: Notifier) -> BackupService:
    seed(paths)
    return make_service(paths, buckets, clock, notifier)


def kinds(receiver: Receiver) -> list[str]:
    return [e["event"] for e in receiver.events(SECRET)]


def test_a_failed_scheduled_backup_is_told_once_per_outage(service: BackupService, receiver: Receiver,
                                                           notifier: Notifier, buckets: dict[str, Bucket],
                                                           clock: Clock) -> None:
    service.backup_now(APP, extended(EVERY, copy=False, webhook=receiver.url))
    buckets["main"].down = True
    for _ in range(3):  # the scheduler retries every few minutes
        clock.now += HOUR
        with pytest.raises(StorageError):
            service.scheduled_backup(APP)
    assert notifier.wait_idle(10)
    [event] = receiver.events(SECRET)
    assert (event["event"], event["app"], event["env"], event["server"]) == ("backup_failed", "demo",
                                                                              "production", "la")
    assert event["error"].startswith("The scheduled backup failed: ")
    assert "connection refused" in event["error"]
    buckets["main"].down = False
    clock.now += HOUR
    service.scheduled_backup(APP)
    buckets["main"].down = True
    clock.now += HOUR
    with pytest.raises(StorageError):
        service.scheduled_backup(APP)
    assert notifier.wait_idle(10)
    assert kinds(receiver) == ["backup_failed", "backup_failed"]  # a new outage is told again
    assert all(SECRET not in r["body"].decode() for r in receiver.requests)


def test_a_failed_post_deploy_backup_is_told_and_the_deploy_goes_on(
        service: BackupService, receiver: Receiver, notifier: Notifier, buckets: dict[str, Bucket]) -> None:
    buckets["main"].down = True
    finalized = service.deploy(APP, extended(EVERY, copy=False, webhook=receiver.url), None)
    assert finalized["backup"]["status"] == "failed"
    assert notifier.wait_idle(10)
    [event] = receiver.events(SECRET)
    assert event["event"] == "backup_failed" and event["error"].startswith("The post-deploy backup failed: ")


def test_a_failed_copy_is_told_as_lagging(service: BackupService, receiver: Receiver, notifier: Notifier,
                                         buckets: dict[str, Bucket]) -> None:
    buckets["spare"].down = True
    reply = service.backup_now_reply(APP, extended(EVERY, webhook=receiver.url))
    assert reply.extra["copy"]["status"] == "failed"
    assert notifier.wait_idle(10)
    [event] = receiver.events(SECRET)
    assert (event["event"], event["backup_id"]) == ("copy_lagging", reply.data["id"])
    assert event["error"].startswith("The copy in bucket spare lags behind: Uploading the copy failed: ")


def test_overdue_and_expiring_credentials_are_told_once_each(service: BackupService, receiver: Receiver,
                                                            notifier: Notifier, clock: Clock) -> None:
    settings = extended(EVERY, webhook=receiver.url, expires_on="2026-12-30",
                        copy_expires_on="2026-12-10")
    newest = service.backup_now(APP, settings)
    assert not service.is_due(APP, int(clock.now))
    assert notifier.wait_idle(10)
    [expiring] = receiver.events(SECRET)  # 9 days left for the copy, 29 for the primary
    assert expiring["event"] == "credentials_expiring"
    assert expiring["error"] == ("The credentials of the copy storage (bucket spare) expire on 2026-12-10; "
                                 "renew them with `tako storages credentials` and deploy.")
    clock.now = NOW + HOUR * 5 // 2  # every 1 h x 1.5 + 1 h = 2.5 h, not more
    service.is_due(APP, int(clock.now))
    clock.now += 1
    for _ in range(3):  # checked every minute, told once
        service.is_due(APP, int(clock.now))
    clock.now += 17 * 24 * HOUR  # now the primary's expire too (in 12 days)
    service.is_due(APP, int(clock.now))
    assert notifier.wait_idle(10)
    events = receiver.events(SECRET)
    assert [e["event"] for e in events] == ["credentials_expiring", "backup_overdue", "credentials_expiring"]
    assert events[1]["backup_id"] == newest["id"]
    assert events[1]["error"] == f"No good backup for more than 2.5 hours (the newest is {newest['id']})."
    assert "backup storage (bucket main) expire on 2026-12-30" in events[2]["error"]


def test_a_failed_scheduled_drill_is_told(service: BackupService, receiver: Receiver, notifier: Notifier,
                                          buckets: dict[str, Bucket]) -> None:
    info = service.backup_now(APP, extended(EVERY, copy=False, webhook=receiver.url))
    archive = bytearray(buckets["main"].objects[info["archive_key"]])
    archive[50] ^= 1
    buckets["main"].objects[info["archive_key"]] = bytes(archive)
    result = service.scheduled_drill(APP)
    assert result is not None and not result.ok
    assert notifier.wait_idle(10)
    [event] = receiver.events(SECRET)
    assert (event["event"], event["backup_id"]) == ("drill_failed", info["id"])
    assert event["error"] == "Downloaded backup checksum did not match manifest."


def test_a_receiver_that_is_down_holds_nothing_up_and_gets_the_event_later(
        paths: ServerPaths, buckets: dict[str, Bucket], clock: Clock) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    notifier = Notifier(first_delay=0.3, max_delay=0.6, timeout=2)
    seed(paths)
    service = make_service(paths, buckets, clock, notifier)
    buckets["spare"].down = True
    settings = extended(EVERY, webhook=f"http://127.0.0.1:{port}/hook")
    started = time.monotonic()
    reply = service.backup_now_reply(APP, settings)  # copy_lagging goes to a receiver that is down
    assert time.monotonic() - started < 5
    assert reply.extra["copy"]["status"] == "failed"
    time.sleep(0.5)
    late = Receiver(port)
    try:
        assert notifier.wait_idle(20)
        [event] = late.events(SECRET)
        assert event["event"] == "copy_lagging"
    finally:
        late.stop()
        notifier.close()


def test_notify_test_sends_now_with_the_stored_or_the_given_settings(
        service: BackupService, receiver: Receiver, paths: ServerPaths, signer: FileSigner) -> None:
    client = AsgiClient(create_app(service, RequestAuth.from_file(paths.authorized_keys)))

    def notify_test(**fields: object):  # type: ignore[no-untyped-def]
        data = body("notify_test", app=APP, **fields)
        return client.post("/rpc", content=data, headers=signed(signer, data))

    refused = notify_test()
    assert refused.status_code == 400 and "has no notification settings" in refused.json()["message"]
    service.backup_now(APP, extended(EVERY, copy=False, webhook=receiver.url))
    stored = notify_test().json()["data"]
    assert stored == {"app": APP, "results": {f"webhook http://127.0.0.1:{receiver.port}/…": "delivered"}}
    other = Receiver()
    try:
        given = NotifySettings(webhook_url=other.url, command=("/bin/sh", "-c", "exit 3"))
        results = notify_test(notify=given.to_dict()).json()["data"]["results"]
        assert results == {f"webhook http://127.0.0.1:{other.port}/…": "delivered",
                           "command /bin/sh …": "failed (exit 3)"}
        [event] = other.events()
        assert (event["event"], event["text"]) == ("test", "Test notification for demo (production) on la: "
                                                           "This is a test notification from tako-server.")
    finally:
        other.stop()
    assert [e["event"] for e in receiver.events(SECRET)] == ["test"]


def test_status_shows_who_is_told_without_secrets(service: BackupService, receiver: Receiver) -> None:
    service.backup_now(APP, extended(EVERY, copy=False, webhook=receiver.url))
    status = service.backup_status(APP)
    assert status["notify"] == {"webhook": f"http://127.0.0.1:{receiver.port}/…", "command": None,
                                "signed": True}
    assert SECRET not in str(status) and "hook-token" not in str(status)


def test_without_notify_settings_nothing_is_sent(service: BackupService, receiver: Receiver,
                                                 notifier: Notifier, buckets: dict[str, Bucket]) -> None:
    service.backup_now(APP, extended(EVERY))
    buckets["spare"].down = True
    service.backup_now(APP, None)
    assert notifier.wait_idle(5) and receiver.requests == []
    with pytest.raises(NotFoundError):
        service.notify_test(APP, None)


