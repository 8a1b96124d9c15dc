"""Someone is told: backup events sent to a webhook and/or a command, never blocking the caller.

Events: ``backup_failed``, ``backup_overdue`` (no good backup for ``every`` x 1.5 + 1 h, see
:func:`is_overdue`), ``drill_failed``, ``copy_lagging``, ``credentials_expiring`` and ``test``.
One JSON body (UTF-8) goes to both targets::

    {"event": "backup_failed", "app": "demo", "env": "production", "server": "la",
     "backup_id": null, "error": "...", "time": "2026-12-01T10:00:00Z",
     "time_unix_secs": 1796119200, "text": "Backup failed for demo (production) on la: ..."}

Webhook: ``POST`` with ``content-type: application/json``, ``x-tako-event``, ``x-tako-delivery``
(one id per event, the same on every retry, so a receiver can drop duplicates) and
``x-tako-timestamp`` (unix seconds of this attempt). With a secret, ``x-tako-signature:
sha256=<hex>`` is the HMAC-SHA256, keyed with the secret's UTF-8 bytes, of the timestamp header,
a ``.`` and the raw body. A receiver recomputes it, compares in constant time and refuses a
timestamp more than 5 minutes from its clock, so a captured request cannot be replayed later
(:func:`verify_signature` does exactly that). A 2xx answer is delivered; 408, 425, 429, 5xx,
timeouts and connection errors are retried with exponential backoff; any other answer (redirects
included: they are not followed) is given up.

Command: the argv runs without a shell, with the body on stdin and ``TAKO_EVENT``, ``TAKO_APP``,
``TAKO_ENV``, ``TAKO_SERVER``, ``TAKO_BACKUP_ID``, ``TAKO_ERROR``, ``TAKO_TIME``,
``TAKO_TIME_UNIX_SECS`` in a small environment (``PATH``, ``HOME``, ``LANG``, ``TZ`` kept; never
the webhook secret). It is killed with its process group after ``command_timeout`` seconds. Exit 0
is delivered, other exits and timeouts are retried, a program that cannot be started is given up.

:class:`Notifier` delivers on one background thread from a bounded queue: :meth:`Notifier.send`
never blocks and never raises; when the queue is full the event is dropped and logged. Its
``once`` key sends a repeated alarm only once; :meth:`Notifier.try_now` delivers once, in the
caller's thread, for a test event. Logs show the webhook as scheme and host only.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import logging
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING

from .. import __version__
from ..errors import TakoError
from ..models import BackupInfo
from ..policy import NotifySettings
from ..primitives.names import check_app_id, join_app_id
from .app_users import AppIdentity

if TYPE_CHECKING:  # httpx is imported when a notification is sent: it costs the idle server ~6 MB
    import httpx

__all__ = ["EVENTS", "Event", "Notifier", "is_overdue", "overdue_after", "sign", "verify_signature"]

log = logging.getLogger(__name__)

TITLES = {
    "backup_failed": "Backup failed", "backup_overdue": "Backup overdue",
    "drill_failed": "Restore drill failed", "copy_lagging": "Backup copy lagging",
    "credentials_expiring": "Storage credentials expire soon", "test": "Test notification",
}
EVENTS = tuple(TITLES)
REPLAY_WINDOW = 300
RETRIED_STATUS = {408, 425, 429}
SENT_MEMORY = 4_096
KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME")
DELIVERED, RETRY, GIVE_UP = "delivered", "retry", "give up"


def overdue_after(every: int) -> int:
    """Seconds without a good backup after which an app is overdue: ``every`` x 1.5 + 1 h."""
    return every * 3 // 2 + 3_600


def is_overdue(newest: BackupInfo | None, now: int, every: int, since: int) -> bool:
    """True when the newest regular backup (:func:`~tako_backups.policy.newest_regular`) is older
    than :func:`overdue_after`, or there is none and backups were enabled that long ago (``since``)."""
    last = newest.created_at_unix_secs if newest is not None else since
    return now - last > overdue_after(every)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 over ``timestamp.body`` keyed with the secret."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str, now: float,
                     window: int = REPLAY_WINDOW) -> bool:
    """What a receiver checks: the signature matches and the timestamp is within ``window`` s."""
    try:
        fresh = abs(now - int(timestamp)) <= window
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass(frozen=True)
class Event:
    """One thing to tell: which ``event`` (one of :data:`EVENTS`), where, when (unix seconds)."""

    event: str
    app: str
    env: str
    server: str
    at: int
    backup_id: str | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if self.event not in TITLES:
            raise ValueError(f"Unknown notification event '{self.event}'.")

    @classmethod
    def for_app(cls, event: str, app_id: str, server: str, at: int, *, backup_id: str | None = None,
                error: str | None = None) -> Event:
        """An event for app id ``{name}/{env}``. Raises FormatError for a bad id."""
        name, env = check_app_id(app_id)
        return cls(event, name, env, server, at, backup_id, error)

    @property
    def iso_time(self) -> str:
        return datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def text(self) -> str:
        """One line for people: ``Backup failed for demo (production) on la: <error>``."""
        where = f"{TITLES[self.event]} for {self.app} ({self.env}) on {self.server}"
        return f"{where}: {self.error}" if self.error else f"{where}."

    def body(self) -> bytes:
        return json.dumps({
            "event": self.event, "app": self.app, "env": self.env, "server": self.server,
            "backup_id": self.backup_id, "error": self.error, "time": self.iso_time,
            "time_unix_secs": self.at, "text": self.text(),
        }).encode()

    def env_vars(self) -> dict[str, str]:
        return {"TAKO_EVENT": self.event, "TAKO_APP": self.app, "TAKO_ENV": self.env,
                "TAKO_SERVER": self.server, "TAKO_BACKUP_ID": self.backup_id or "",
                "TAKO_ERROR": self.error or "", "TAKO_TIME": self.iso_time,
                "TAKO_TIME_UNIX_SECS": str(self.at)}


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    target: str = field(compare=False)  # "webhook" or "command"
    settings: NotifySettings = field(compare=False)
    event: Event = field(compare=False)
    delivery_id: str = field(compare=False)
    attempt: int = field(default=0, compare=False)

    def shown(self) -> str:
        return (f"webhook {self.settings.shown_url()}" if self.target == "webhook"
                else f"command {self.settings.shown_command()}")


class Notifier:
    """Delivers events in the background (see the module docstring). Thread-safe."""

    def __init__(self, *, queue_limit: int = 256, attempts: int = 8, first_delay: float = 5.0,
                 max_delay: float = 600.0, timeout: float = 10.0, command_timeout: float = 30.0,
                 clock: Callable[[], float] = time.time,
                 run_as: Callable[[str], AppIdentity] | None = None) -> None:
        """``run_as`` gives the identity an app's notification command runs with (the app's own
        uid and gid when the server runs as root, see :mod:`.app_users`): a command comes from
        the project's settings, so it never gets the server's rights."""
        self._run_as = run_as
        self.queue_limit, self.attempts = queue_limit, attempts
        self.first_delay, self.max_delay = first_delay, max_delay
        self.timeout, self.command_timeout = timeout, command_timeout
        self._clock = clock
        self._cond = threading.Condition()
        self._heap: list[_Delivery] = []
        self._active = 0
        self._seq = itertools.count()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._sent: dict[tuple[str, str, str, str], None] = {}  # ``once`` keys, oldest first

    def send(self, settings: NotifySettings | None, event: Event, *, once: str | None = None) -> int:
        """Queue ``event`` for the webhook and the command of ``settings``; returns how many
        deliveries were queued (0 without settings, or when the queue is full: dropped and logged).
        With ``once``, an event of the same kind, app and ``once`` key is sent only the first time
        (e.g. an overdue alarm once per newest backup id). Never blocks, never raises."""
        if settings is None:
            return 0
        targets = _targets(settings)
        delivery_id = uuid.uuid4().hex
        with self._cond:
            if once is not None:
                key = (event.event, event.app, event.env, once)
                if key in self._sent:
                    return 0
                self._sent[key] = None
                while len(self._sent) > SENT_MEMORY:
                    del self._sent[next(iter(self._sent))]
            if self._closed or len(self._heap) + self._active + len(targets) > self.queue_limit:
                log.error("%s notification for %s/%s dropped: %d deliveries are already waiting",
                          event.event, event.app, event.env, len(self._heap) + self._active)
                return 0
            for target in targets:
                heapq.heappush(self._heap, _Delivery(time.monotonic(), next(self._seq), target, settings,
                                                     event, delivery_id))
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="tako-notify", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return len(targets)

    def try_now(self, settings: NotifySettings, event: Event) -> dict[str, str]:
        """Deliver ``event`` once to each target of ``settings``, in the calling thread (for
        ``tako backups notify test``): shown target -> ``delivered`` or why not. Blocks up to
        ``timeout`` + ``command_timeout`` seconds; never raises."""
        import httpx

        outcomes = {}
        with httpx.Client(timeout=self.timeout, follow_redirects=False) as client:
            for target in _targets(settings):
                d = _Delivery(0.0, 0, target, settings, event, uuid.uuid4().hex)
                try:
                    outcome, why = self._post(client, d) if target == "webhook" else self._run(d)
                except Exception as exc:
                    outcome, why = GIVE_UP, exc.__class__.__name__
                outcomes[d.shown()] = DELIVERED if outcome == DELIVERED else f"failed ({why})"
        return outcomes

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until every queued delivery is delivered or given up."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._heap or self._active:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = 5.0) -> bool:
        """Stop after the delivery in progress; deliveries still waiting are logged and dropped.
        True when the thread ended within ``timeout`` s."""
        with self._cond:
            self._closed = True
            if self._heap:
                log.warning("%d notification deliveries dropped at shutdown", len(self._heap))
            self._heap.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def _work(self) -> None:
        import httpx

        with httpx.Client(timeout=self.timeout, follow_redirects=False) as client:
            while True:
                with self._cond:
                    while not self._closed and (not self._heap or self._heap[0].due > time.monotonic()):
                        self._cond.wait(self._heap[0].due - time.monotonic() if self._heap else None)
                    if self._closed:
                        return
                    delivery = heapq.heappop(self._heap)
                    self._active += 1
                outcome, why = GIVE_UP, "unexpected error"
                try:
                    outcome, why = (self._post(client, delivery) if delivery.target == "webhook"
                                    else self._run(delivery))
                except Exception:
                    log.exception("notification delivery to %s failed unexpectedly", delivery.shown())
                finally:
                    self._settle(delivery, outcome, why)

    def _settle(self, d: _Delivery, outcome: str, why: str) -> None:
        d.attempt += 1
        what = f"{d.event.event} notification for {d.event.app}/{d.event.env} to {d.shown()}"
        with self._cond:
            self._active -= 1
            if outcome == RETRY and d.attempt < self.attempts and not self._closed:
                delay = min(self.max_delay, self.first_delay * 2 ** (d.attempt - 1))
                d.due = time.monotonic() + delay
                heapq.heappush(self._heap, d)
                log.warning("%s failed (%s); retrying in %.3gs (attempt %d of %d)", what, why, delay,
                            d.attempt, self.attempts)
            elif outcome == DELIVERED:
                log.info("%s delivered (attempt %d)", what, d.attempt)
            else:
                log.error("%s failed (%s); giving up after %d attempt(s)", what, why, d.attempt)
            self._cond.notify_all()

    def _post(self, client: httpx.Client, d: _Delivery) -> tuple[str, str]:
        body, timestamp = d.event.body(), str(int(self._clock()))
        headers = {"content-type": "application/json", "user-agent": f"tako-backups/{__version__}",
                   "x-tako-event": d.event.event, "x-tako-delivery": d.delivery_id,
                   "x-tako-timestamp": timestamp}
        if d.settings.webhook_secret is not None:
            headers["x-tako-signature"] = sign(d.settings.webhook_secret, timestamp, body)
        url = (d.settings.webhook_url or "").strip()
        import httpx

        try:
            with client.stream("POST", url, content=body, headers=headers) as reply:
                status = reply.status_code  # the reply body is never read
        except httpx.HTTPError as exc:
            return RETRY, exc.__class__.__name__
        except Exception as exc:  # an httpx refusal whose message could repeat the URL
            return GIVE_UP, exc.__class__.__name__
        if 200 <= status < 300:
            return DELIVERED, f"answered {status}"
        return (RETRY if status in RETRIED_STATUS or status >= 500 else GIVE_UP), f"answered {status}"

    def _run(self, d: _Delivery) -> tuple[str, str]:
        env = {k: os.environ[k] for k in KEPT_ENV if k in os.environ} | d.event.env_vars()
        try:
            who = None if self._run_as is None else self._run_as(join_app_id(d.event.app, d.event.env))
            proc = subprocess.Popen(list(d.settings.command or ()), stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                                    start_new_session=True, cwd="/",
                                    user=None if who is None else who.uid,
                                    group=None if who is None else who.gid,
                                    extra_groups=None if who is None else list(who.groups),
                                    umask=-1 if who is None else 0o027)
        except TakoError as exc:
            return GIVE_UP, f"cannot start: {exc}"
        except (OSError, ValueError) as exc:
            return GIVE_UP, f"cannot start: {getattr(exc, 'strerror', None) or exc.__class__.__name__}"
        if proc.stdin is None or proc.stderr is None:  # pragma: no cover -- both are pipes
            return GIVE_UP, "no pipes"
        tail = bytearray()
        drain = threading.Thread(target=_keep_tail, args=(proc.stderr, tail), daemon=True)
        drain.start()
        try:
            proc.stdin.write(d.event.body())
            proc.stdin.close()
        except OSError:
            pass  # the command did not read its input; its exit code decides
        try:
            code = proc.wait(self.command_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return RETRY, f"killed after {self.command_timeout:g}s"
        finally:
            drain.join(1)
        if code == 0:
            return DELIVERED, "exit 0"
        said = tail.decode(errors="replace").strip().splitlines()
        return RETRY, f"exit {code}" + (f": {said[-1][:200]}" if said else "")


def _targets(settings: NotifySettings) -> list[str]:
    return [t for t, on in (("webhook", settings.webhook_url), ("command", settings.command)) if on]


def _keep_tail(stream: IO[bytes], tail: bytearray, limit: int = 2_048) -> None:
    """Read ``stream`` to its end, keeping only its last ``limit`` bytes in ``tail``."""
    for chunk in iter(lambda: stream.read(4_096), b""):
        tail.extend(chunk)
        del tail[:-limit]
