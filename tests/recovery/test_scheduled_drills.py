"""The scheduler's weekly drill of the newest backup (with an injected interval), over SeaweedFS,
and the drill record the server keeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tako_backups.core.drill import DrillResult
from tako_backups.errors import FormatError
from tako_backups.server.drills import DRILL_INTERVAL, DrillLog, drill_due
from tako_backups.server.paths import ServerPaths
from tako_backups.server.scheduler import Scheduler
from tako_backups.server.service import BackupService
from tako_backups.server.state import AppState
from tako_backups.storage.s3 import S3Store
from tests.recovery.conftest import make_tree
from tests.server.helpers import APP, binding
from tests.support.waiting import wait_for

NOW = 1_800_000_000
HOUR = 3_600


def test_the_scheduler_drills_the_newest_backup_once_per_interval(tmp_path: Path,
                                                                  seaweed_store: S3Store) -> None:
    paths = ServerPaths(tmp_path / "tako")
    paths.prepare()
    clock = {"now": NOW}
    service = BackupService(paths, "la", store_factory=lambda b: seaweed_store, clock=lambda: clock["now"])
    service.deploy(APP, binding(), None)
    make_tree(paths.data_dir("demo", "production"))
    clock["now"] += 60
    newest = service.backup_now(APP, None)
    scheduler = Scheduler(service, interval=3600, clock=lambda: clock["now"], drill_interval=HOUR)
    scheduler.start()
    try:
        wait_for(lambda: service.drills.records.last(APP) is not None)
    finally:
        assert scheduler.stop(timeout=20)
    drill = service.drills.records.last(APP)
    assert drill is not None
    assert (drill.backup_id, drill.at_unix_secs, drill.ok) == (newest["id"], NOW + 60, True)
    status = service.backup_status(APP)
    assert (status["last_drill"], status["last_ok_drill"]) == (drill.to_dict(), drill.to_dict())
    assert status["overdue"] is False

    checks = Scheduler(service, clock=lambda: clock["now"], drill_interval=HOUR)  # checked by hand
    assert checks.run_drills() == []  # not due again within the interval
    clock["now"] += HOUR
    [again] = checks.run_drills()
    assert (again.backup_id, again.at_unix_secs, again.ok) == (newest["id"], NOW + 60 + HOUR, True)
    clock["now"] += 36 * HOUR + 1  # the newest is 37 h + 1 s old: every 24 h x 1.5 + 1 h
    assert service.backup_status(APP)["overdue"] is True
    with service.locks.hold(APP):  # a drill never waits for (nor blocks) a backup or restore
        clock["now"] += HOUR
        assert [d.at_unix_secs for d in checks.run_drills()] == [clock["now"]]
    assert list(paths.drill_work.iterdir()) == []


def test_an_app_without_backups_is_overdue_and_not_drilled(tmp_path: Path, seaweed_store: S3Store) -> None:
    paths = ServerPaths(tmp_path / "tako")
    paths.prepare()
    service = BackupService(paths, "la", store_factory=lambda b: seaweed_store, clock=lambda: NOW)
    service.state.save(APP, AppState(backup=binding()))
    assert service.backup_status(APP)["overdue"] is True
    assert Scheduler(service, clock=lambda: NOW).run_drills() == []
    assert service.drills.records.last(APP) is None


def test_drills_are_due_weekly_and_failed_ones_daily() -> None:
    passed = DrillResult("b1-AbCdEf12", NOW, 1.5, True)
    failed = DrillResult("b1-AbCdEf12", NOW, 1.5, False, "Downloaded backup checksum did not match manifest.")
    assert drill_due(None, NOW)
    assert not drill_due(passed, NOW + DRILL_INTERVAL - 1) and drill_due(passed, NOW + DRILL_INTERVAL)
    assert not drill_due(failed, NOW + 86_399) and drill_due(failed, NOW + 86_400)
    assert drill_due(passed, NOW + 10, interval=10)


def test_the_drill_log_keeps_the_last_and_the_last_passed_drill(tmp_path: Path) -> None:
    log = DrillLog(tmp_path / "state")
    passed = DrillResult("b1-AbCdEf12", NOW, 1.25, True)
    failed = DrillResult("b2-AbCdEf12", NOW + 9, 0.5, False, "Backup b2-AbCdEf12 failed authentication.")
    assert log.read(APP) == (None, None)
    log.record(APP, passed)
    log.record(APP, failed)
    assert log.read(APP) == (failed, passed)
    path = tmp_path / "state" / "drills" / "demo.production.json"
    assert json.loads(path.read_text()) == {"last": failed.to_dict(), "last_ok": passed.to_dict()}
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_text("{damaged")
    assert log.read(APP) == (None, None)
    with pytest.raises(FormatError, match="^Invalid app name: must start with a lowercase letter$"):
        log.record("Not An App", passed)
