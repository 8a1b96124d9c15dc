"""App runtime: run, supervise, stop and restart each app's processes.

An app (key ``"name/env"``) is *configured* with a start command (argv), a wanted instance count and
its data dir (``apps/{name}/{env}/data/``). ``start`` runs ``instances`` copies of the argv, each in
its own process group, with a clean environment (``app_environment``: nothing of the server's
but ``LANG``) and umask 027; a supervisor thread restarts copies that exit (for any reason) with a
growing delay while the app is meant to run. With ``users`` (tako-server runs as root) each app
runs as its own uid and gid (:mod:`.app_users`), never as root; without, as the server's user.
``stop`` sends SIGTERM to every process group, SIGKILL after the timeout, and waits until they
are gone; a stopped app stays stopped until ``start``. When a process exits on its own, whatever
it left in its group is killed before the restart. Nothing here prints: it logs via ``logging``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, FormatError
from ..primitives.names import check_app_id, join_app_id
from ..primitives.start_command import argv_problem, env_var_problem
from ..primitives.text import printable
from .app_users import APP_UMASK, AppIdentity, AppUsers, app_environment, check_reachable
from .process_groups import signal_group, terminate_groups

__all__ = ["AppRuntime", "AppStatus", "RestartPolicy"]

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class RestartPolicy:
    """How long the supervisor waits before restarting a crashed process."""

    initial: float = 0.5
    maximum: float = 10.0
    reset_after: float = 30.0

    def next_delay(self, previous: float | None, lived: float) -> float:
        """Delay before the next restart, given the previous delay and how long the process lived.

        The first crash, and any crash of a process that lived ``reset_after`` seconds or more,
        waits ``initial``; each further quick crash doubles the delay, up to ``maximum``.
        """
        if previous is None or lived >= self.reset_after:
            return min(self.initial, self.maximum)
        return min(max(previous * 2, self.initial), self.maximum)


@dataclass(frozen=True)
class AppStatus:
    """A snapshot of one app.

    ``running`` is True between ``start`` and ``stop`` (also while a crashed process waits for its
    restart); ``pids`` are the processes alive right now; ``restarts`` counts supervisor restarts
    since the runtime was created.
    """

    app: str
    configured: bool
    argv: tuple[str, ...]
    instances: int
    pids: tuple[int, ...]
    restarts: int
    running: bool


@dataclass(frozen=True)
class _Config:
    argv: tuple[str, ...]
    instances: int
    data_dir: Path
    env: tuple[tuple[str, str], ...]
    cwd: Path
    who: AppIdentity | None


@dataclass
class _Slot:
    number: int
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    delay: float | None = None
    due_at: float = 0.0


class _App:
    def __init__(self, key: str, config: _Config) -> None:
        self.key = key
        self.config = config
        self.active: _Config | None = None
        self.slots: list[_Slot] = []
        self.restarts = 0
        self.op_lock = threading.RLock()


class AppRuntime:
    """Supervises the processes of every configured app. Thread-safe."""

    def __init__(self, log_dir: Path, policy: RestartPolicy | None = None, poll_interval: float = 0.1,
                 *, users: AppUsers | None = None):
        """``log_dir`` receives ``{name}.{env}.log`` per app (stdout and stderr, appended; apps
        write through the descriptor they are given). With ``users`` each app runs as its own
        uid and gid (only root can do that); its data dir must then be the app's already
        (``ServerPaths.ensure_data_dir``)."""
        self._log_dir = Path(log_dir)
        self._users = users
        self._policy = policy or RestartPolicy()
        self._poll_interval = poll_interval
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._apps: dict[str, _App] = {}
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def configure(
        self,
        app: str,
        argv: list[str],
        instances: int,
        data_dir: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        """Register (or replace) an app's start command; running processes keep their old settings
        until the next ``start``/``restart``.

        Raises ConfigError for a malformed app key, an empty argv, a negative instance count, NUL
        bytes or a bad variable name in argv or env, and when the app's uid cannot be had.
        """
        _check_key(app)
        problem = argv_problem(argv)
        if problem is not None:
            raise ConfigError(f"The start command of {app} {problem}; fix `start` in tako.toml.")
        for name, value in (env or {}).items():
            problem = env_var_problem(name, value)
            if problem is not None:
                raise ConfigError(f"The environment variable '{printable(name, 64)}' of {app} {problem}.")
        if instances < 0:
            raise ConfigError(f"The instance count of {app} must be 0 or more, not {instances}.")
        data_dir = Path(data_dir)
        config = _Config(
            argv=tuple(argv),
            instances=instances,
            data_dir=data_dir,
            env=tuple(sorted((env or {}).items())),
            cwd=Path(cwd) if cwd is not None else data_dir.parent,
            who=self._users.identity(app) if self._users is not None else None,
        )
        with self._lock:
            current = self._apps.get(app)
            if current is None:
                self._apps[app] = _App(app, config)
            else:
                current.config = config

    def start(self, app: str) -> None:
        """Start the app's instances (no-op if running or if ``instances`` is 0).

        Raises ConfigError for an unknown app, when the app's uid cannot reach its data dir or
        cwd, and when the command cannot be run (missing program, missing cwd, not executable by
        the app's uid); nothing is left running then.
        """
        entry = self._get(app)
        with entry.op_lock:
            self._start(entry)

    def stop(self, app: str, timeout: float = 10.0) -> bool:
        """Stop the app: SIGTERM each process group, SIGKILL after ``timeout`` seconds, wait until
        they are gone. Returns whether the app was running. Unknown or stopped apps return False."""
        with self._lock:
            entry = self._apps.get(app)
        if entry is None:
            return False
        with entry.op_lock:
            return self._stop_many([entry], timeout)

    def restart(self, app: str, timeout: float = 10.0) -> None:
        """Stop (if running) and start the app with its latest configuration.

        Raises the same errors as ``start``.
        """
        entry = self._get(app)
        with entry.op_lock:
            self._stop_many([entry], timeout)
            self._start(entry)

    def status(self, app: str) -> AppStatus:
        """The app's current state; an unknown app reports ``configured=False``. Never raises."""
        with self._lock:
            entry = self._apps.get(app)
            if entry is None:
                return AppStatus(app, False, (), 0, (), 0, False)
            pids = tuple(s.proc.pid for s in entry.slots if s.proc is not None and s.proc.poll() is None)
            return AppStatus(
                app=app,
                configured=True,
                argv=entry.config.argv,
                instances=entry.config.instances,
                pids=pids,
                restarts=entry.restarts,
                running=entry.active is not None,
            )

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop every app (all at once, same timeout) and the supervisor thread."""
        with self._lock:
            entries = sorted(self._apps.values(), key=lambda e: e.key)
        for entry in entries:
            entry.op_lock.acquire()
        try:
            self._stop_many(entries, timeout)
        finally:
            for entry in reversed(entries):
                entry.op_lock.release()
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._stopping.set()
                self._wake.notify_all()
        if thread is not None:
            thread.join()

    def _get(self, app: str) -> _App:
        with self._lock:
            entry = self._apps.get(app)
        if entry is None:
            raise ConfigError(f"App {app} has no start command on this server; deploy it with `start` set.")
        return entry

    def _start(self, entry: _App) -> None:
        with self._lock:
            if entry.active is not None or entry.config.instances == 0:
                return
            config = entry.config
            check_reachable(entry.key, config.who, config.data_dir / "app", config.cwd)
            slots = [_Slot(n) for n in range(config.instances)]
            failure: OSError | None = None
            for slot in slots:
                try:
                    self._spawn(entry.key, config, slot)
                except OSError as exc:
                    failure = exc
                    break
            if failure is None:
                entry.active, entry.slots = config, slots
                self._ensure_thread()
                log.info("started %s: %d instance(s)", entry.key, len(slots))
                return
        terminate_groups([s.proc for s in slots if s.proc is not None], timeout=5.0)
        what = failure.filename or config.argv[0]
        reason = failure.strerror or str(failure)
        who = f" as uid {config.who.uid}" if config.who is not None else ""
        raise ConfigError(f"Cannot start {entry.key}{who}: {what}: {reason}; check `start` in tako.toml.")

    def _stop_many(self, entries: Iterable[_App], timeout: float) -> bool:
        slots: list[_Slot] = []
        was_running = False
        with self._lock:
            for entry in entries:
                was_running |= entry.active is not None
                entry.active = None
                slots.extend(s for s in entry.slots if s.proc is not None)
                entry.slots = []
        terminate_groups([s.proc for s in slots if s.proc is not None], timeout)
        return was_running

    def _spawn(self, key: str, config: _Config, slot: _Slot) -> None:
        app_dir = config.data_dir / "app"
        if config.who is None:
            app_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        self._log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        name, env_name = check_app_id(key)
        fd = os.open(self._log_dir / f"{name}.{env_name}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        who = config.who
        with open(fd, "ab") as out:
            slot.proc = subprocess.Popen(
                list(config.argv),
                cwd=config.cwd,
                env=app_environment(app_dir, slot.number, config.env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                umask=APP_UMASK,
                user=None if who is None else who.uid,
                group=None if who is None else who.gid,
                extra_groups=None if who is None else list(who.groups),
            )
        slot.started_at = time.monotonic()
        log.info("%s instance %d running as pid %d (uid %d)", key, slot.number, slot.proc.pid,
                 os.geteuid() if who is None else who.uid)

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._stopping = threading.Event()
            self._thread = threading.Thread(
                target=self._supervise, args=(self._stopping,), name="tako-app-runtime", daemon=True
            )
            self._thread.start()

    def _supervise(self, stopping: threading.Event) -> None:
        with self._lock:
            while not stopping.is_set():
                now = time.monotonic()
                for entry in self._apps.values():
                    if entry.active is not None:
                        self._check(entry, entry.active, now)
                self._wake.wait(self._poll_interval)

    def _check(self, entry: _App, config: _Config, now: float) -> None:
        for slot in entry.slots:
            if slot.proc is not None:
                code = slot.proc.poll()
                if code is None:
                    continue
                lived = now - slot.started_at
                slot.delay = self._policy.next_delay(slot.delay, lived)
                slot.due_at = now + slot.delay
                signal_group(slot.proc.pid, signal.SIGKILL)
                log.warning(
                    "%s instance %d (pid %d) exited with %s after %.1fs; restarting in %.1fs",
                    entry.key,
                    slot.number,
                    slot.proc.pid,
                    code,
                    lived,
                    slot.delay,
                )
                slot.proc = None
            if now >= slot.due_at:
                try:
                    self._spawn(entry.key, config, slot)
                except OSError as exc:
                    slot.delay = self._policy.next_delay(slot.delay, 0.0)
                    slot.due_at = now + slot.delay
                    log.error("%s instance %d could not restart: %s", entry.key, slot.number, exc)
                else:
                    entry.restarts += 1


def _check_key(app: str) -> None:
    """Raises ConfigError unless ``app`` is a ``{name}/{env}`` id the server accepts."""
    try:
        reason = None if join_app_id(*check_app_id(app)) == app else "it has no '/{env}'"
    except FormatError as exc:
        reason = str(exc).rstrip(".")
    if reason is not None:
        raise ConfigError(f"App '{printable(app, 64)}' is not a valid app id ({reason}); expected "
                          "{name}/{env}, e.g. demo/production.")
