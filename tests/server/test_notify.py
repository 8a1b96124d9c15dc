"""Notifications: signed webhooks to a real receiver on 127.0.0.1 (also one that is down, hangs or
fails), commands fed the event on stdin and in their environment, the bounded queue, overdue rule."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tako_backups.errors import FormatError
from tako_backups.models import BackupExtras, BackupInfo, EncryptionInfo
from tako_backups.policy import NotifySettings, newest_regular
from tako_backups.server.notify import Event, Notifier, is_overdue, overdue_after, verify_signature
from tests.support.webhooks import TOKEN, Receiver

NOW = 1_796_119_200  # 2026-12-01T10:00:00Z
SECRET = "whsec-0123456789abcdef-never-logged"
EVENT = Event.for_app("backup_failed", "demo/production", "la", NOW, error="Upload of 'x' failed.")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture
def notifier() -> Iterator[Notifier]:
    sender = Notifier(first_delay=0.05, max_delay=0.2, timeout=2, command_timeout=5, clock=lambda: NOW)
    yield sender
    sender.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hook(url: str, secret: str | None = SECRET) -> NotifySettings:
    return NotifySettings(webhook_url=url, webhook_secret=secret)


# ----- webhooks -----

def test_webhook_gets_the_event_as_signed_json(receiver: Receiver, notifier: Notifier,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tako_backups.server.notify")
    assert notifier.send(hook(receiver.url), EVENT) == 1
    assert notifier.wait_idle(10)
    [request] = receiver.requests
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert request["path"] == f"/hooks/{TOKEN}?key={TOKEN}"
    assert headers["content-type"] == "application/json"
    assert (headers["x-tako-event"], headers["x-tako-timestamp"]) == ("backup_failed", str(NOW))
    assert json.loads(request["body"]) == {
        "event": "backup_failed", "app": "demo", "env": "production", "server": "la", "backup_id": None,
        "error": "Upload of 'x' failed.", "time": "2026-12-01T10:00:00Z", "time_unix_secs": NOW,
        "text": "Backup failed for demo (production) on la: Upload of 'x' failed."}
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + request["body"], hashlib.sha256).hexdigest()
    assert headers["x-tako-signature"] == f"sha256={expected}"
    assert verify_signature(SECRET, str(NOW), request["body"], headers["x-tako-signature"], now=NOW + 299)
    signature = headers["x-tako-signature"]
    assert not verify_signature(SECRET, str(NOW), request["body"] + b" ", signature, now=NOW)
    assert not verify_signature(SECRET, str(NOW), request["body"], headers["x-tako-signature"], now=NOW + 301)
    assert not verify_signature("another-secret-0123456789", str(NOW), request["body"],
                                headers["x-tako-signature"], now=NOW)
    assert caplog.messages == [f"backup_failed notification for demo/production to webhook "
                               f"http://127.0.0.1:{receiver.port}/… delivered (attempt 1)"]


def test_without_a_secret_requests_are_not_signed(receiver: Receiver, notifier: Notifier) -> None:
    notifier.send(hook(receiver.url, secret=None), Event.for_app("test", "demo/production", "la", NOW))
    assert notifier.wait_idle(10)
    [request] = receiver.requests
    assert "x-tako-signature" not in {k.lower() for k in request["headers"]}
    assert json.loads(request["body"])["text"] == "Test notification for demo (production) on la."


def test_a_receiver_that_is_down_gets_the_event_once_it_is_up_and_the_caller_never_waits(
        notifier: Notifier, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks/{TOKEN}"
    assert notifier.send(hook(url), EVENT) == 1
    assert not notifier.wait_idle(0)  # send() returned with the delivery still to be made
    deadline = time.monotonic() + 10
    while sum("retrying" in m for m in caplog.messages) < 2:  # connection refused, twice
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert "ConnectError" in caplog.messages[0]
    late = Receiver(port)
    try:
        assert notifier.wait_idle(10)
        [request] = late.requests
        assert json.loads(request["body"])["event"] == "backup_failed"
    finally:
        late.stop()
    assert SECRET not in caplog.text and TOKEN not in caplog.text


def test_a_hanging_receiver_never_blocks_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    slow = Receiver(delay=1.0)
    sender = Notifier(first_delay=0.05, attempts=2, timeout=0.2, clock=lambda: NOW)
    try:
        assert [sender.send(hook(slow.url), EVENT) for _ in range(3)] == [1, 1, 1]
        assert slow.requests == []  # all three calls returned before the receiver answered once
        assert sender.wait_idle(20)
        assert sum("ReadTimeout" in m and "retrying" in m for m in caplog.messages) == 3
        assert sum("giving up after 2 attempt(s)" in m for m in caplog.messages) == 3
    finally:
        sender.close()
        slow.stop()


def test_server_errors_are_retried_with_the_same_delivery_id_and_refusals_are_not(
        notifier: Notifier, caplog: pytest.LogCaptureFixture) -> None:
    flaky = Receiver(statuses=[503, 429, 200])
    refusing = Receiver(statuses=[404, 404])
    try:
        notifier.send(hook(flaky.url), EVENT)
        notifier.send(hook(refusing.url), EVENT)
        assert notifier.wait_idle(10)
    finally:
        flaky.stop()
        refusing.stop()
    assert len(flaky.requests) == 3
    assert len({r["headers"]["x-tako-delivery"] for r in flaky.requests}) == 1
    assert len(refusing.requests) == 1
    assert any(m.endswith("failed (answered 404); giving up after 1 attempt(s)") for m in caplog.messages)


def test_the_queue_is_bounded_and_a_full_queue_drops_the_event(caplog: pytest.LogCaptureFixture) -> None:
    sender = Notifier(queue_limit=2, first_delay=30, clock=lambda: NOW)
    try:
        down = hook(f"http://127.0.0.1:{free_port()}/x")
        assert [sender.send(down, EVENT) for _ in range(3)] == [1, 1, 0]
        assert sender.send(None, EVENT) == 0
        assert "backup_failed notification for demo/production dropped: 2 deliveries are already waiting" in (
            caplog.messages)
        assert not sender.wait_idle(0.2)
    finally:
        assert sender.close(timeout=5)
    assert sender.send(down, EVENT) == 0  # closed


def test_once_sends_a_repeated_alarm_only_the_first_time(receiver: Receiver, notifier: Notifier) -> None:
    overdue = Event.for_app("backup_overdue", "demo/production", "la", NOW, error="No backup since ...")
    later = Event.for_app("backup_overdue", "demo/production", "la", NOW + 60, error="No backup since ...")
    other_app = Event.for_app("backup_overdue", "shop/production", "la", NOW)
    sent = [notifier.send(hook(receiver.url), e, once="b1-AbCdEf12") for e in (overdue, later, other_app)]
    sent.append(notifier.send(hook(receiver.url), later, once="b2-AbCdEf12"))  # a new episode
    assert sent == [1, 0, 1, 1]
    assert notifier.wait_idle(10)
    assert sorted((json.loads(r["body"])["app"], json.loads(r["body"])["time_unix_secs"])
                  for r in receiver.requests) == [("demo", NOW), ("demo", NOW + 60), ("shop", NOW)]


def test_try_now_reports_each_target_in_the_calling_thread(receiver: Receiver, notifier: Notifier) -> None:
    test_event = Event.for_app("test", "demo/production", "la", NOW)
    settings = NotifySettings(webhook_url=receiver.url, webhook_secret=SECRET,
                              command=(sys.executable, "-c", "import sys; sys.exit(4)"))
    assert notifier.try_now(settings, test_event) == {
        f"webhook http://127.0.0.1:{receiver.port}/…": "delivered",
        f"command {sys.executable} …": "failed (exit 4)"}
    assert len(receiver.requests) == 1  # delivered before try_now returned
    port = free_port()
    assert notifier.try_now(hook(f"http://127.0.0.1:{port}/x"), test_event) == {
        f"webhook http://127.0.0.1:{port}/…": "failed (ConnectError)"}


# ----- commands -----

RECORDER = """
import json, os, sys
data = sys.stdin.read()
env = {k: v for k, v in os.environ.items() if k.startswith("TAKO_") or k == "SERVER_SECRET"}
with open(sys.argv[1], "a") as out:
    out.write(json.dumps({"stdin": data, "env": env, "argv": sys.argv[2:]}) + "\\n")
"""


def test_a_command_gets_the_event_on_stdin_and_in_its_environment(
        tmp_path: Path, notifier: Notifier, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVER_SECRET", "not for the command")
    out = tmp_path / "got.jsonl"
    settings = NotifySettings(command=(sys.executable, "-c", RECORDER, str(out), "--flag; rm -rf /"))
    event = Event.for_app("drill_failed", "demo/production", "la", NOW, backup_id="b1-AbCdEf12",
                          error="Size mismatch.")
    notifier.send(settings, event)
    assert notifier.wait_idle(10)
    [got] = [json.loads(line) for line in out.read_text().splitlines()]
    assert json.loads(got["stdin"]) == json.loads(event.body())
    assert got["argv"] == ["--flag; rm -rf /"]  # passed as one argument: no shell
    assert got["env"] == {"TAKO_EVENT": "drill_failed", "TAKO_APP": "demo", "TAKO_ENV": "production",
                          "TAKO_SERVER": "la", "TAKO_BACKUP_ID": "b1-AbCdEf12",
                          "TAKO_ERROR": "Size mismatch.",
                          "TAKO_TIME": "2026-12-01T10:00:00Z", "TAKO_TIME_UNIX_SECS": str(NOW)}


def test_webhook_and_command_both_receive_and_the_secret_never_reaches_the_command(
        tmp_path: Path, receiver: Receiver, notifier: Notifier) -> None:
    out = tmp_path / "got.jsonl"
    dump_env = "import json, os, sys; open(sys.argv[1], 'w').write(json.dumps(dict(os.environ)))"
    settings = NotifySettings(webhook_url=receiver.url, webhook_secret=SECRET,
                              command=(sys.executable, "-c", dump_env, str(out)))
    assert notifier.send(settings, EVENT) == 2
    assert notifier.wait_idle(10)
    assert len(receiver.requests) == 1
    assert SECRET not in out.read_text() and TOKEN not in out.read_text()


def test_a_failing_command_is_retried_until_it_succeeds(tmp_path: Path, notifier: Notifier,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    counter = tmp_path / "runs"
    script = ("import pathlib, sys; p = pathlib.Path(sys.argv[1]); n = len(p.read_text()) if p.exists() "
              "else 0; p.write_text('x' * (n + 1)); print('mail server busy', file=sys.stderr); "
              "sys.exit(0 if n >= 2 else 3)")
    caplog.set_level(logging.INFO, logger="tako_backups.server.notify")
    notifier.send(NotifySettings(command=(sys.executable, "-c", script, str(counter))), EVENT)
    assert notifier.wait_idle(10)
    assert counter.read_text() == "xxx"
    assert "(exit 3: mail server busy); retrying in" in caplog.messages[0]
    assert caplog.messages[-1].endswith("delivered (attempt 3)")


def test_a_command_that_runs_too_long_is_killed_with_its_children(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    pid_file = tmp_path / "child.pid"
    script = ("import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', 'import time; "
              "time.sleep(60)']); open(sys.argv[1], 'w').write(str(c.pid)); time.sleep(60)")
    sender = Notifier(attempts=1, command_timeout=0.5, clock=lambda: NOW)
    try:
        sender.send(NotifySettings(command=(sys.executable, "-c", script, str(pid_file))), EVENT)
        assert sender.wait_idle(20)  # the command would have slept for 60 s
    finally:
        sender.close()
    assert caplog.messages[-1].endswith("failed (killed after 0.5s); giving up after 1 attempt(s)")
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(child):
        assert time.monotonic() < deadline, "the command's child survived"
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (killed, not yet reaped by init) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_missing_program_is_given_up_at_once(notifier: Notifier, caplog: pytest.LogCaptureFixture) -> None:
    notifier.send(NotifySettings(command=("/nonexistent/page-me",)), EVENT)
    assert notifier.wait_idle(10)
    assert caplog.messages == ["backup_failed notification for demo/production to command "
                               "/nonexistent/page-me failed (cannot start: No such file or directory); "
                               "giving up after 1 attempt(s)"]


# ----- events and the overdue rule -----

def test_events_are_checked() -> None:
    with pytest.raises(ValueError, match="Unknown notification event 'backup_done'"):
        Event("backup_done", "demo", "production", "la", NOW)
    with pytest.raises(FormatError):
        Event.for_app("test", "Demo Production", "la", NOW)


def _backup(created: int, reason: str) -> BackupInfo:
    return BackupInfo(f"b{created}-AAAAAAAA", "demo", "production", "la", created, 1, "0" * 64, "a", "m",
                      EncryptionInfo("backup-key-0123456789abcdef", "n", "t"),
                      BackupExtras(files=1, bytes=1, reason=reason))


def test_overdue_after_every_and_a_half_plus_an_hour() -> None:
    assert overdue_after(86_400) == 37 * 3_600
    assert overdue_after(900) == 1_350 + 3_600
    good = _backup(NOW - 37 * 3_600, "scheduled")
    assert not is_overdue(good, NOW, 86_400, since=0)
    assert is_overdue(good, NOW + 1, 86_400, since=0)
    safety = _backup(NOW, "pre-restore")  # a fresh safety backup is not a good backup
    assert is_overdue(newest_regular([safety, good]), NOW + 1, 86_400, since=0)
    assert not is_overdue(None, NOW, 3_600, since=NOW - 5_400)  # enabled 1.5 h ago, limit 1.5 h + 1 h
    assert is_overdue(None, NOW, 3_600, since=NOW - 9_001)


def test_a_command_runs_with_the_apps_identity_not_the_servers(caplog: pytest.LogCaptureFixture) -> None:
    """The command comes from a project's settings: as root, the server runs it as the app's own
    uid and gid (CI runs as root, so this runs for real)."""
    from tako_backups.server.app_users import AppIdentity

    assert os.geteuid() == 0, "tako-server drops rights only as root; CI runs the tests as root"
    who = AppIdentity(1879048999, 1879048999, ())
    asked: list[str] = []

    def run_as(app: str) -> AppIdentity:
        asked.append(app)
        return who

    sender = Notifier(attempts=1, clock=lambda: NOW, run_as=run_as)
    caplog.set_level(logging.INFO, logger="tako_backups.server.notify")
    script = "echo uid=$(id -u) gid=$(id -g) groups=$(id -G) >&2; exit 3"
    try:
        sender.send(NotifySettings(command=("/bin/sh", "-c", script)), EVENT)
        assert sender.wait_idle(10)
    finally:
        sender.close()
    assert asked == [f"{EVENT.app}/{EVENT.env}"]
    assert any("exit 3: uid=1879048999 gid=1879048999 groups=1879048999" in m for m in caplog.messages)
