"""Who an app runs as and what it is given: its own uid and gid when tako-server is root, never
the server's, and a clean environment always.

As root, tako-server must not lend its rights to the apps it runs: an app could read
``state/server.key`` (every app's S3 secret and backup keys), edit ``management-authorized-keys``
or open another app's data. One shared app uid would not do either: processes of one uid may
read each other's files, reach each other's folders through ``/proc/<pid>/cwd`` and signal each
other. So each app (``{name}/{env}``) gets its own uid, with a gid of the same number, allocated
once from :data:`APP_IDS` and kept in ``state/app-ids.json``. The ids have no ``/etc/passwd``
entry (services of systemd's ``DynamicUser=`` and OpenShift pods run the same way), so nothing
under ``/etc`` is written after install and the systemd unit keeps it read-only.

The account named by ``--app-user`` (default ``tako-app``, created with ``useradd --system`` when
missing) lends every app its group as a supplementary group: that group alone may pass through
the data root, ``apps/`` and ``apps/{name}/`` (``root:tako-app 0710``); each app's
``apps/{name}/{env}/`` and ``data/`` are ``root:<its gid> 0710``, so no app enters another's.
When tako-server is not root, apps run as its user (it has no other), still with the clean
environment of :func:`app_environment`. Nothing here prints: errors are ConfigErrors with the fix
in them.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import stat
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..primitives.atomic_files import os_reason, write_atomic
from ..primitives.names import check_app_id, join_app_id
from ..primitives.text import printable

__all__ = ["APP_IDS", "APP_PATH", "APP_UMASK", "DEFAULT_APP_USER", "AppAccount", "AppIdentity", "AppUsers",
           "app_account", "app_environment", "check_reachable", "useradd_command"]

DEFAULT_APP_USER = "tako-app"
# 0x70000000-0x7000ffff: above systemd's container ranges and the subordinate ids useradd hands
# out (/etc/subuid), below 2**31 (some tools read ids as signed); see systemd.io/UIDS-GIDS.
APP_IDS = range(0x7000_0000, 0x7001_0000)
NOLOGIN = "/usr/sbin/nologin"
APP_PATH = "/usr/local/bin:/usr/bin:/bin"
APP_UMASK = 0o027
_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class AppAccount:
    """The ``--app-user`` account: its group lets the apps through the data root."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class AppIdentity:
    """The credentials one app's processes run with: ``uid``, ``gid`` and supplementary ``groups``."""

    uid: int
    gid: int
    groups: tuple[int, ...]


def useradd_command(name: str) -> list[str]:
    """The command that creates the ``--app-user`` account (shown in errors and the README)."""
    return ["useradd", "--system", "--user-group", "--no-create-home", "--shell", NOLOGIN, name]


def app_account(name: str) -> AppAccount:
    """The ``--app-user`` account ``name``, created with ``useradd --system`` when missing.

    Raises ConfigError for a name useradd would refuse, an account that is root (uid or gid 0),
    and an account that does not exist and cannot be created (under the systemd unit ``/etc`` is
    read-only: create it at install time).
    """
    if not _USER_NAME.fullmatch(name):
        raise ConfigError(f"--app-user '{printable(name, 40)}' is not a valid user name: use up to 32 "
                          "lowercase letters, digits, '_' and '-', starting with a letter or '_'.")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        entry = _create(name)
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise ConfigError(f"--app-user {name} is root (uid {entry.pw_uid}, gid {entry.pw_gid}); apps must "
                          "not run with root's rights. Name an unprivileged account (the default is "
                          f"{DEFAULT_APP_USER}).")
    return AppAccount(name, entry.pw_uid, entry.pw_gid)


def _create(name: str) -> pwd.struct_passwd:
    command = useradd_command(name)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        lines = done.stderr.strip().splitlines()
        reason = lines[-1] if lines else f"exit status {done.returncode}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = os_reason(exc) if isinstance(exc, OSError) else "it did not finish within 60 s"
    try:
        return pwd.getpwnam(name)  # made now, or by a server starting at the same time
    except KeyError:
        raise ConfigError(f"The app user '{name}' does not exist and could not be created "
                          f"({printable(reason)}); create it with `{' '.join(command)}` and start "
                          "tako-server again.") from None


class AppUsers:
    """Each app's identity: its own uid and gid from ``ids`` (kept in ``ids_file``), and the
    ``account``'s group as its only supplementary group. Thread-safe."""

    def __init__(self, ids_file: Path, account: AppAccount, ids: range = APP_IDS) -> None:
        self.ids_file = ids_file
        self.account = account
        self._range = ids
        self._lock = threading.Lock()
        self._known: dict[str, int] | None = None

    def identity(self, app: str) -> AppIdentity:
        """The identity of ``app`` (``{name}/{env}``), allocated and saved on first use.

        Raises ConfigError when ``app-ids.json`` is unreadable or invalid, when it cannot be
        written, or when every id of the range is taken.
        """
        app = join_app_id(*check_app_id(app))
        with self._lock:
            known = self._load()
            number = known.get(app)
            if number is None:
                number = self._free(set(known.values()))
                self._save({**known, app: number})
        return AppIdentity(number, number, (self.account.gid,))

    def _load(self) -> dict[str, int]:
        if self._known is not None:
            return self._known
        try:
            text = self.ids_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = "{}"
        except OSError as exc:
            raise ConfigError(f"Cannot read {self.ids_file}: {os_reason(exc)}.") from None
        try:
            known = json.loads(text)
        except ValueError:
            known = None
        numbers = list(known.values()) if isinstance(known, dict) else [None]
        valid = all(type(n) is int and n in self._range for n in numbers)
        if not valid or len(set(numbers)) != len(numbers):
            raise ConfigError(f"{self.ids_file} is not a valid map of app ids to uids; fix it, or move it "
                              "away so the apps get new uids (their data is handed to the new uids at their "
                              "next start).")
        assert isinstance(known, dict)
        self._known = {str(k): int(v) for k, v in known.items()}
        return self._known

    def _save(self, known: dict[str, int]) -> None:
        text = json.dumps(dict(sorted(known.items())), indent=2) + "\n"
        try:
            write_atomic(self.ids_file, text.encode("utf-8"), mode=0o600)
        except OSError as exc:
            raise ConfigError(f"Cannot write {self.ids_file}: {os_reason(exc)}.") from None
        self._known = known

    def _free(self, taken: set[int]) -> int:
        for number in self._range:
            if number not in taken and not _id_in_use(number):
                return number
        raise ConfigError(f"Every app uid from {self._range.start} to {self._range.stop - 1} is taken; "
                          f"remove the apps that are gone from {self.ids_file}.")


def _id_in_use(number: int) -> bool:
    """Whether a user or group of that number is known to the system (files, LDAP, ...)."""
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(number)
        except KeyError:
            continue
        return True
    return False


def app_environment(app_dir: Path, instance: int, variables: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The whole environment of an app process: ``PATH`` (:data:`APP_PATH`), ``HOME`` (the app's
    data dir, the one folder it may write), the server's ``LANG`` when set, the app's
    ``variables`` (which may replace those three), then ``TAKO_DATA_DIR`` and ``TAKO_INSTANCE``.
    Nothing else of the server's environment (no AWS_*, no secrets) reaches an app."""
    env = {"PATH": APP_PATH, "HOME": str(app_dir)}
    if os.environ.get("LANG"):
        env["LANG"] = os.environ["LANG"]
    env.update(variables)
    env["TAKO_DATA_DIR"] = str(app_dir)
    env["TAKO_INSTANCE"] = str(instance)
    return env


def check_reachable(app: str, who: AppIdentity | None, app_dir: Path, cwd: Path) -> None:
    """Raises ConfigError when ``who`` (None: the server's own user, always fine) could not reach
    ``app_dir`` or ``cwd``, or ``app_dir`` is not its own."""
    if who is None:
        return
    for place in (app_dir, cwd):
        blocked = _first_unreachable(place, who)
        if blocked is not None:
            raise ConfigError(
                f"Cannot start {app} as uid {who.uid}: it cannot reach {place} because {blocked} is missing "
                "or not searchable by it; let others search the folders above the data dir (chmod o+x) or "
                "choose another --data-dir.")
    if app_dir.stat().st_uid != who.uid:
        raise ConfigError(f"Cannot start {app} as uid {who.uid}: {app_dir} is not its own; restart "
                          "tako-server to hand it over.")


def _first_unreachable(path: Path, who: AppIdentity) -> Path | None:
    """The first folder from ``/`` down to ``path`` (itself included) that ``who`` may not search
    by its mode bits (ACLs are not read), or None when every one may be passed."""
    for folder in (*reversed(path.parents), path):
        try:
            st = folder.stat()
        except OSError:
            return folder
        if not _may_search(st, who):
            return folder
    return None


def _may_search(st: os.stat_result, who: AppIdentity) -> bool:
    if st.st_uid == who.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == who.gid or st.st_gid in who.groups:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)
