"""AppRuntime with real processes: the notes app and tiny `python -c` programs."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tako_backups.errors import ConfigError
from tako_backups.server.app_users import APP_IDS, AppAccount
from tako_backups.server.paths import ServerPaths
from tako_backups.server.runtime import AppRuntime, AppStatus, RestartPolicy
from tests.support.tako_server import APP_PYTHON, let_apps_reach
from tests.support.waiting import wait_for

NOTES_APP = Path(__file__).resolve().parents[2] / "examples" / "notes-app" / "app.py"
NOTES_ARGV = [sys.executable, str(NOTES_APP)]
FAST = {"NOTES_INTERVAL": "0.02"}


def alive(pid: int) -> bool:
    """True while the pid is a live (non-zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def rows(app_dir: Path) -> int:
    db = app_dir / "notes.db"
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT count(*) FROM notes").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[AppRuntime]:
    rt = AppRuntime(tmp_path / "logs", RestartPolicy(initial=0.1, maximum=0.4), poll_interval=0.05)
    yield rt
    rt.shutdown(timeout=2.0)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "apps" / "notes" / "production" / "data"
    path.mkdir(parents=True)
    return path


def test_notes_app_without_data_dir_exits_2_with_message() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TAKO_DATA_DIR"}
    done = subprocess.run(NOTES_ARGV, env=env, capture_output=True, text=True, timeout=10)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "notes-app: TAKO_DATA_DIR is not set; run it under tako-server or set TAKO_DATA_DIR=/path/to/data\n"
    )


def test_notes_app_writes_stops_cleanly_and_resumes(runtime: AppRuntime, data_dir: Path) -> None:
    app_dir = data_dir / "app"
    runtime.configure("notes/production", NOTES_ARGV, 1, data_dir, env=FAST)
    runtime.start("notes/production")
    status = runtime.status("notes/production")
    assert (status.configured, status.argv, status.instances, status.running) == (
        True,
        tuple(NOTES_ARGV),
        1,
        True,
    )
    assert len(status.pids) == 1
    first_pid = status.pids[0]
    wait_for(lambda: rows(app_dir) >= 25, "25 rows")
    wait_for(lambda: (app_dir / "uploads" / "note-20.txt").exists(), "upload of note 20")

    assert runtime.stop("notes/production", timeout=5.0) is True
    assert not alive(first_pid)
    assert runtime.status("notes/production") == AppStatus(
        "notes/production", True, tuple(NOTES_ARGV), 1, (), 0, False
    )
    assert not (app_dir / "notes.db-wal").exists(), "a clean close checkpoints and removes the WAL"
    stopped_at = rows(app_dir)
    time.sleep(0.3)
    assert rows(app_dir) == stopped_at
    assert runtime.status("notes/production").pids == (), "a stopped app stays stopped"

    conn = sqlite3.connect(app_dir / "notes.db")
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    bodies = dict(conn.execute("SELECT id, body FROM notes"))
    conn.close()
    uploads = sorted((app_dir / "uploads").iterdir())
    assert [p.name for p in uploads] == sorted(f"note-{i}.txt" for i in bodies if i % 10 == 0)
    assert all(p.read_text() == bodies[int(p.stem[5:])] + "\n" for p in uploads)
    count = subprocess.run([*NOTES_ARGV, "--count", str(app_dir)], capture_output=True, text=True, timeout=10)
    assert (count.returncode, count.stdout) == (0, f"{stopped_at}\n")

    runtime.start("notes/production")
    wait_for(lambda: rows(app_dir) >= stopped_at + 10, "rows to grow again")
    assert runtime.status("notes/production").pids[0] != first_pid


def test_killed_instance_is_restarted_with_a_new_pid(runtime: AppRuntime, data_dir: Path) -> None:
    runtime.configure("notes/production", NOTES_ARGV, 1, data_dir, env=FAST)
    runtime.start("notes/production")
    (old_pid,) = runtime.status("notes/production").pids
    os.kill(old_pid, signal.SIGKILL)
    wait_for(lambda: runtime.status("notes/production").pids not in ((), (old_pid,)), "a new pid")
    status = runtime.status("notes/production")
    assert status.restarts == 1 and status.running
    before = rows(data_dir / "app")
    wait_for(lambda: rows(data_dir / "app") > before + 5, "the restarted app to write")


def test_two_instances_run_as_two_processes(runtime: AppRuntime, data_dir: Path) -> None:
    runtime.configure("notes/production", NOTES_ARGV, 2, data_dir, env=FAST)
    runtime.start("notes/production")
    pids = runtime.status("notes/production").pids
    assert len(set(pids)) == 2

    def both_wrote() -> bool:
        if rows(data_dir / "app") == 0:
            return False
        conn = sqlite3.connect(data_dir / "app" / "notes.db", timeout=10)
        found = {b.split(" at ")[0] for (b,) in conn.execute("SELECT body FROM notes")}
        conn.close()
        return found == {"note from instance 0", "note from instance 1"}

    wait_for(both_wrote, "rows from instance 0 and instance 1")
    assert runtime.stop("notes/production") is True
    assert not any(alive(p) for p in pids)


def test_process_ignoring_sigterm_is_killed_after_timeout(runtime: AppRuntime, data_dir: Path) -> None:
    ready = data_dir.parent / "ready"
    code = (
        "import signal, sys, time, pathlib\n"
        "signal.signal(signal.SIGTERM, lambda *a: print('ignoring SIGTERM', flush=True))\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "while True: time.sleep(0.05)\n"
    )
    runtime.configure("stubborn/production", [sys.executable, "-c", code], 1, data_dir)
    runtime.start("stubborn/production")
    (pid,) = runtime.status("stubborn/production").pids
    wait_for(ready.exists, "the SIGTERM trap to be installed")
    began = time.monotonic()
    assert runtime.stop("stubborn/production", timeout=0.5) is True
    elapsed = time.monotonic() - began
    assert 0.5 <= elapsed < 5.0
    assert not alive(pid)
    assert runtime.status("stubborn/production").restarts == 0
    log = (data_dir.parents[3] / "logs" / "stubborn.production.log").read_text()
    assert log == "ignoring SIGTERM\n"


def test_stop_kills_the_whole_process_group(runtime: AppRuntime, data_dir: Path) -> None:
    child_pid_file = data_dir.parent / "child.pid"
    code = (
        "import subprocess, pathlib\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        f"pathlib.Path({str(child_pid_file)!r}).write_text(str(child.pid))\n"
        "child.wait()\n"
    )
    runtime.configure("parent/production", [sys.executable, "-c", code], 1, data_dir)
    runtime.start("parent/production")
    wait_for(lambda: child_pid_file.exists() and child_pid_file.read_text(), "the child's pid")
    child = int(child_pid_file.read_text())
    assert alive(child)
    assert runtime.stop("parent/production", timeout=2.0) is True
    assert not alive(child)


def test_app_gets_data_dir_instance_env_cwd_and_log(
    runtime: AppRuntime, data_dir: Path, tmp_path: Path
) -> None:
    code = (
        "import os, sys, time\n"
        "env = os.environ\n"
        "print(env['TAKO_DATA_DIR'], env['TAKO_INSTANCE'], env['GREETING'], os.getcwd())\n"
        "print('to stderr', file=sys.stderr, flush=True)\n"
        "sys.stdout.flush(); time.sleep(60)\n"
    )
    log = tmp_path / "logs" / "envcheck.staging.log"
    runtime.configure("envcheck/staging", [sys.executable, "-c", code], 1, data_dir, env={"GREETING": "hi"})
    runtime.start("envcheck/staging")
    wait_for(lambda: log.exists() and log.read_text().count("\n") == 2, "two log lines")
    assert sorted(log.read_text().splitlines()) == sorted(
        [f"{data_dir / 'app'} 0 hi {data_dir.parent}", "to stderr"]
    )
    assert (data_dir / "app").is_dir()

    workdir = tmp_path / "release"
    workdir.mkdir()
    runtime.configure(
        "envcheck/staging", [sys.executable, "-c", code], 1, data_dir, env={"GREETING": "yo"}, cwd=workdir
    )
    runtime.restart("envcheck/staging")
    wait_for(lambda: log.read_text().count("\n") == 4, "two more log lines (appended)")
    assert f"{data_dir / 'app'} 0 yo {workdir}" in log.read_text().splitlines()


def test_crash_loop_backs_off_and_stop_ends_it(tmp_path: Path, data_dir: Path) -> None:
    starts = tmp_path / "starts"
    code = (
        "import time\n"
        f"with open({str(starts)!r}, 'a') as f: f.write(f'{{time.time()}}\\n')\n"
        "raise SystemExit(3)\n"
    )
    runtime = AppRuntime(tmp_path / "logs", RestartPolicy(initial=0.2, maximum=0.4), poll_interval=0.02)
    try:
        runtime.configure("crashy/production", [sys.executable, "-c", code], 1, data_dir)
        runtime.start("crashy/production")

        def times() -> list[float]:
            return [float(x) for x in starts.read_text().split()] if starts.exists() else []

        wait_for(lambda: len(times()) >= 4, "three restarts")
        gaps = [b - a for a, b in zip(times(), times()[1:], strict=False)]
        assert gaps[0] >= 0.2 and gaps[1] >= 0.4 and gaps[2] >= 0.4, gaps
        assert runtime.stop("crashy/production") is True
        seen = len(times())
        time.sleep(0.6)
        assert len(times()) == seen, "nothing restarts after stop"
        assert runtime.status("crashy/production").running is False
    finally:
        runtime.shutdown(timeout=2.0)


def test_restart_policy_doubles_caps_and_resets() -> None:
    policy = RestartPolicy()
    assert policy.next_delay(None, 0.0) == 0.5
    assert policy.next_delay(0.5, 1.0) == 1.0
    assert policy.next_delay(8.0, 1.0) == 10.0
    assert policy.next_delay(10.0, 29.9) == 10.0
    assert policy.next_delay(10.0, 30.0) == 0.5


def test_stop_of_never_started_or_unknown_app_returns_false(runtime: AppRuntime, data_dir: Path) -> None:
    runtime.configure("idle/production", NOTES_ARGV, 1, data_dir)
    assert runtime.stop("idle/production") is False
    assert runtime.stop("ghost/production") is False
    assert runtime.status("ghost/production") == AppStatus("ghost/production", False, (), 0, (), 0, False)


def test_zero_instances_is_configured_but_not_started(runtime: AppRuntime, data_dir: Path) -> None:
    runtime.configure("zero/production", NOTES_ARGV, 0, data_dir)
    runtime.start("zero/production")
    assert runtime.status("zero/production") == AppStatus(
        "zero/production", True, tuple(NOTES_ARGV), 0, (), 0, False
    )


def test_shutdown_stops_every_app(runtime: AppRuntime, tmp_path: Path) -> None:
    pids = []
    for name in ("one", "two"):
        data = tmp_path / "apps" / name / "production" / "data"
        runtime.configure(f"{name}/production", NOTES_ARGV, 1, data, env=FAST)
        runtime.start(f"{name}/production")
        pids += runtime.status(f"{name}/production").pids
    runtime.shutdown(timeout=5.0)
    assert len(pids) == 2 and not any(alive(p) for p in pids)
    assert [runtime.status(f"{n}/production").running for n in ("one", "two")] == [False, False]


def test_start_errors_name_the_problem(runtime: AppRuntime, data_dir: Path) -> None:
    with pytest.raises(ConfigError) as err:
        runtime.start("ghost/production")
    assert (
        str(err.value)
        == "App ghost/production has no start command on this server; deploy it with `start` set."
    )

    runtime.configure("broken/production", ["/nonexistent/bin/app"], 2, data_dir)
    with pytest.raises(ConfigError) as err:
        runtime.start("broken/production")
    assert str(err.value) == (
        "Cannot start broken/production: /nonexistent/bin/app: No such file or directory; "
        "check `start` in tako.toml."
    )
    assert runtime.status("broken/production").running is False

    with pytest.raises(ConfigError) as err:
        runtime.configure("../etc", NOTES_ARGV, 1, data_dir)
    assert str(err.value) == ("App '../etc' is not a valid app id (Invalid app name: must start with a "
                              "lowercase letter); expected {name}/{env}, e.g. demo/production.")
    with pytest.raises(ConfigError) as err:
        runtime.configure("demo", NOTES_ARGV, 1, data_dir)
    assert str(err.value) == ("App 'demo' is not a valid app id (it has no '/{env}'); expected {name}/{env}, "
                              "e.g. demo/production.")
    with pytest.raises(ConfigError) as err:
        runtime.configure("demo/production", [], 1, data_dir)
    assert str(err.value) == ("The start command of demo/production must be a non-empty list of non-empty "
                              "strings; fix `start` in tako.toml.")
    with pytest.raises(ConfigError) as err:
        runtime.configure("demo/production", NOTES_ARGV, -1, data_dir)
    assert str(err.value) == "The instance count of demo/production must be 0 or more, not -1."
    with pytest.raises(ConfigError) as err:
        runtime.configure("demo/production", NOTES_ARGV, 1, data_dir, env={"A=B": "x"})
    assert str(err.value) == "The environment variable 'A=B' of demo/production has an invalid name."


@pytest.fixture
def as_app_users(tmp_path: Path) -> Iterator[tuple[ServerPaths, AppRuntime]]:
    """Server paths whose apps run as uids of their own (nogroup standing for tako-app's group),
    and a runtime using them; the data root's temp parents are searchable, as /opt is."""
    assert os.geteuid() == 0, "running apps as other uids needs root; CI runs as root"
    paths = ServerPaths(tmp_path / "tako").run_apps_as(AppAccount("tako-test", 65534, 65534))
    paths.prepare()
    let_apps_reach(paths.root)
    rt = AppRuntime(paths.logs_dir, RestartPolicy(initial=0.1, maximum=0.4), poll_interval=0.05,
                    users=paths.users)
    yield paths, rt
    rt.shutdown(timeout=2.0)


def test_app_runs_as_its_own_uid_with_a_clean_environment_and_umask(
        as_app_users: tuple[ServerPaths, AppRuntime], monkeypatch: pytest.MonkeyPatch) -> None:
    paths, runtime = as_app_users
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "server-secret")
    monkeypatch.setenv("LANG", "C.UTF-8")
    data = paths.ensure_data_dir("envcheck", "staging")
    code = ("import os, time\n"
            "open(os.path.join(os.environ['HOME'], 'made.txt'), 'w').close()\n"
            "time.sleep(60)\n")
    runtime.configure("envcheck/staging", [APP_PYTHON, "-c", code], 1, data, env={"GREETING": "hi"})
    runtime.start("envcheck/staging")
    (pid,) = runtime.status("envcheck/staging").pids
    made = data / "app" / "made.txt"
    wait_for(made.exists, "the app to write into its HOME")
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    uid = APP_IDS.start
    assert status["Uid"].split() == status["Gid"].split() == [str(uid)] * 4
    assert status["Groups"].split() == ["65534"]
    assert status["Umask"].strip() == "0027"
    raw = Path(f"/proc/{pid}/environ").read_text().split("\0")
    environ = dict(item.split("=", 1) for item in raw if item)
    assert environ == {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(data / "app"), "LANG": "C.UTF-8",
                       "GREETING": "hi", "TAKO_DATA_DIR": str(data / "app"), "TAKO_INSTANCE": "0"}
    assert (made.stat().st_uid, made.stat().st_gid, made.stat().st_mode & 0o777) == (uid, uid, 0o640)


def test_program_the_app_uid_cannot_run_is_refused_naming_the_uid(
        as_app_users: tuple[ServerPaths, AppRuntime], tmp_path: Path) -> None:
    paths, runtime = as_app_users
    data = paths.ensure_data_dir("locked", "production")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    program = private / "run"
    program.write_text("#!/bin/sh\nsleep 60\n")
    program.chmod(0o755)
    runtime.configure("locked/production", [str(program)], 1, data)
    with pytest.raises(ConfigError) as refused:
        runtime.start("locked/production")
    assert str(refused.value) == (f"Cannot start locked/production as uid {APP_IDS.start}: {program}: "
                                  "Permission denied; check `start` in tako.toml.")
    assert runtime.status("locked/production").pids == ()
