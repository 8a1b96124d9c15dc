"""How often an env is backed up, which backups are kept, and who is told when something is wrong.

Plain data shared by the CLI and the server (like :mod:`.models`), with two ways in:

- ``from_dict`` reads the wire and state shape (JSON; what the CLI sends and the server stores).
  It is strict: an unknown, missing or mistyped field raises :class:`~.errors.FormatError`.
- ``from_settings`` / :func:`parse_env_settings` read what a developer wrote (a TOML table); a
  bad value raises :class:`~.errors.ConfigError` naming the key, where it is and how to fix it.

Wire shapes (``to_dict``; keys that are not set are left out)::

    policy: {"every_seconds": 3600, "keep_hourly": 24, "keep_daily": 30, "keep_monthly": 12}
            {"every_seconds": 86400, "retention_days": 30}          (Tako's default)
    notify: {"webhook_url": "https://...", "webhook_secret": "...", "command": ["/usr/bin/x", "-q"]}

A policy either keeps backups by age (``retention_days``; Tako's rule) or by restic-style tiers
(``keep_last``/``keep_hourly``/``keep_daily``/``keep_weekly``/``keep_monthly``), never both. The
webhook URL and secret are secrets: they travel with the settings (like storage credentials) but
no repr, message or log line shows them (:meth:`NotifySettings.shown_url` is the safe form).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError, FormatError
from .models import DEFAULT_RETENTION_DAYS, PRE_RESTORE, BackupBinding, BackupInfo
from .primitives.json_shapes import check_fields
from .primitives.text import printable
from .storage.endpoints import is_loopback_host

__all__ = [
    "DEFAULT_EVERY", "MAX_EVERY", "MIN_EVERY", "PRE_RESTORE", "TIERS", "BackupPolicy",
    "NotifySettings", "format_every", "is_pre_restore", "newest_regular", "parse_env_settings",
    "parse_every", "policy_of",
]

MIN_EVERY = 15 * 60
MAX_EVERY = 24 * 3600
DEFAULT_EVERY = MAX_EVERY
TIERS = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly")
MIN_SECRET = 16
_DURATION = re.compile(r"(?:(\d{1,4})d)?(?:(\d{1,5})h)?(?:(\d{1,6})m)?")
_EVERY_HINT = "between 15m and 24h, written like 15m, 1h, 90m or 24h"


def is_pre_restore(info: BackupInfo) -> bool:
    """True for the safety backup a restore takes of the live data (manifest reason ``pre-restore``)."""
    return info.extras is not None and info.extras.reason == PRE_RESTORE


def newest_regular(backups: Iterable[BackupInfo]) -> BackupInfo | None:
    """The newest backup that is not a pre-restore safety backup, or None. The schedule, the
    overdue rule and retention's age reference count from it: a safety backup of (often damaged)
    data must not make an app look freshly backed up."""
    regular = [b for b in backups if not is_pre_restore(b)]
    return max(regular, key=lambda b: (b.created_at_unix_secs, b.id), default=None)


def policy_of(binding: BackupBinding) -> BackupPolicy:
    """The policy an app's backup settings ask for: their ``policy``, else Tako's rule (every
    24 h, keep ``retention_days``)."""
    if binding.policy is not None:
        return binding.policy
    return BackupPolicy(retention_days=binding.retention_days)


def parse_every(text: str) -> int:
    """Seconds in a duration such as ``15m``, ``1h``, ``90m``, ``1h30m`` or ``24h`` (also ``1d``).

    Raises ValueError (with no message) when it is not such a duration or lies outside 15m..24h;
    callers word the error for where the value came from.
    """
    match = _DURATION.fullmatch(text.strip().lower()) if isinstance(text, str) else None
    if match is None or not any(match.groups()):
        raise ValueError
    days, hours, minutes = (int(g or 0) for g in match.groups())
    seconds = days * 86_400 + hours * 3_600 + minutes * 60
    if not MIN_EVERY <= seconds <= MAX_EVERY:
        raise ValueError
    return seconds


def format_every(seconds: int) -> str:
    """``3600`` -> ``1h``, ``5400`` -> ``90m``: the shortest form :func:`parse_every` reads back."""
    if seconds % 3_600 == 0:
        return f"{seconds // 3_600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


@dataclass(frozen=True)
class BackupPolicy:
    """How often (``every`` seconds, 15 min .. 24 h) and which backups to keep.

    With no ``keep_*`` count set, backups are kept by age: ``retention_days`` (None means Tako's
    30). With any count set, restic ``forget`` tiers apply and ``retention_days`` must be None.
    Either way the newest 3 intact backups stay (see :mod:`.core.retention`). Building one that
    breaks these rules raises ValueError.
    """

    every: int = DEFAULT_EVERY
    keep_last: int | None = None
    keep_hourly: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    retention_days: int | None = None

    def __post_init__(self) -> None:
        problem = _policy_problem(self)
        if problem is not None:
            raise ValueError(f"'{problem[0]}' {problem[1]}")

    @property
    def tiered(self) -> bool:
        """True when any ``keep_*`` count is set (restic tiers instead of the age rule)."""
        return any(getattr(self, name) is not None for name in TIERS)

    @property
    def days(self) -> int | None:
        """Days kept by the age rule, or None for a tiered policy."""
        return None if self.tiered else (self.retention_days or DEFAULT_RETENTION_DAYS)

    @property
    def tako_retention_days(self) -> int:
        """``retention_days`` for Tako's server, which knows only the age rule: the policy's days,
        or Tako's 30 for a tiered policy."""
        return self.days or DEFAULT_RETENTION_DAYS

    def describe(self) -> str:
        """``every 1h, keeps 24 hourly, 30 daily, 12 monthly`` or ``every 24h, keeps 30 days``."""
        if not self.tiered:
            days = self.days
            return f"every {format_every(self.every)}, keeps {days} day{'' if days == 1 else 's'}"
        parts = [f"{'last ' if name == 'keep_last' else ''}{count}"
                 f"{'' if name == 'keep_last' else ' ' + name.removeprefix('keep_')}"
                 for name in TIERS if (count := getattr(self, name)) is not None]
        return f"every {format_every(self.every)}, keeps {', '.join(parts)}"

    @classmethod
    def from_dict(cls, obj: Any) -> BackupPolicy:
        """The wire/state shape. Raises FormatError naming the field."""
        d = check_fields(obj, "Backup policy", {"every_seconds": int},
                         {"retention_days": int, **dict.fromkeys(TIERS, int)})
        if "retention_days" not in d and not any(name in d for name in TIERS):
            raise FormatError("Backup policy needs 'retention_days' or at least one keep_* count.")
        values = {("every" if k == "every_seconds" else k): v for k, v in d.items()}
        problem = _policy_problem(values)
        if problem is not None:
            name = "every_seconds" if problem[0] == "every" else problem[0]
            raise FormatError(f"Backup policy field '{name}' {problem[1]}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"every_seconds": self.every}
        if not self.tiered:
            out["retention_days"] = self.days
        out.update((name, count) for name in TIERS if (count := getattr(self, name)) is not None)
        return out

    @classmethod
    def from_settings(cls, table: Mapping[str, Any], where: str) -> BackupPolicy:
        """A developer's settings table: ``every = "1h"``, ``keep_hourly = 24``, ...,
        ``retention_days = 7``; missing keys take Tako's defaults (every 24h, 30 days).

        ``where`` names the table in messages, e.g. ``[envs.production] of tako-backups.toml``.
        Raises ConfigError naming the key and the fix.
        """
        allowed = ("every", "retention_days", *TIERS)
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            raise ConfigError(f"Unknown key '{printable(str(unknown[0]), 40)}' in {where}; the keys are "
                              f"{', '.join(allowed)} and notify.")
        values: dict[str, Any] = {k: v for k, v in table.items() if k != "every"}
        if "every" in table:
            try:
                values["every"] = parse_every(table["every"])
            except ValueError:
                raise ConfigError(f"`every` in {where} must be a duration {_EVERY_HINT}, not "
                                  f"{_shown_value(table['every'])}.") from None
        problem = _policy_problem(values)
        if problem is not None:
            raise ConfigError(f"`{problem[0]}` in {where} {problem[1]}")
        return cls(**values)


def _policy_problem(policy: BackupPolicy | Mapping[str, Any]) -> tuple[str, str] | None:
    """The first rule ``policy`` breaks as (field, ``must ...`` sentence), or None."""
    def get(name: str) -> Any:
        return policy.get(name) if isinstance(policy, Mapping) else getattr(policy, name)

    every = get("every")
    if every is not None and (not _is_int(every) or not MIN_EVERY <= every <= MAX_EVERY):
        return "every", f"must be {_EVERY_HINT} ({MIN_EVERY} to {MAX_EVERY} seconds)."
    for name in ("retention_days", *TIERS):
        value = get(name)
        if value is not None and (not _is_int(value) or value < 1):
            fix = "to keep Tako's 30 days" if name == "retention_days" else f"for no {name[5:]} tier"
            return name, f"must be a whole number of at least 1; leave it out {fix}."
    if get("retention_days") is not None and any(get(name) is not None for name in TIERS):
        return "retention_days", ("cannot be combined with keep_* counts; use either retention_days "
                                  "or the tiers.")
    return None


@dataclass(frozen=True)
class NotifySettings:
    """Who is told: a webhook (JSON POST, HMAC-signed when a secret is set) and/or a command
    (argv, never a shell). At least one of ``webhook_url`` and ``command`` is set; building one
    that breaks the rules raises ValueError (whose message never repeats the URL or secret)."""

    webhook_url: str | None = None
    command: tuple[str, ...] | None = None
    webhook_secret: str | None = None

    def __post_init__(self) -> None:
        problem = _notify_problem(self.webhook_url, self.command, self.webhook_secret)
        if problem is not None:
            raise ValueError(f"'{problem[0]}' {problem[1]}")

    def __repr__(self) -> str:
        return (f"NotifySettings(webhook={self.shown_url()!r}, command={self.shown_command()!r}, "
                f"signed={self.signed})")

    @property
    def signed(self) -> bool:
        """True when webhook requests are signed (a secret is set)."""
        return self.webhook_secret is not None

    def shown_url(self) -> str | None:
        """The webhook as safe to show: scheme and host only (paths and queries often hold tokens)."""
        if self.webhook_url is None:
            return None
        parts = urlsplit(self.webhook_url.strip())
        return f"{parts.scheme.lower()}://{parts.netloc.lower()}/…"

    def shown_command(self) -> str | None:
        """The command's program only (arguments may hold tokens)."""
        if self.command is None:
            return None
        return self.command[0] + (" …" if len(self.command) > 1 else "")

    def describe(self) -> str:
        """``webhook https://hooks.example.com/… (signed), command /usr/local/bin/page-me …``."""
        parts = []
        if self.webhook_url is not None:
            parts.append(f"webhook {self.shown_url()}{' (signed)' if self.signed else ''}")
        if self.command is not None:
            parts.append(f"command {self.shown_command()}")
        return ", ".join(parts)

    def summary(self) -> dict[str, Any]:
        """What a status reply may show, no secrets: ``{"webhook", "command", "signed"}``."""
        return {"webhook": self.shown_url(), "command": self.shown_command(), "signed": self.signed}

    @classmethod
    def from_dict(cls, obj: Any) -> NotifySettings:
        """The wire/state shape. Raises FormatError naming the field (never its value)."""
        d = check_fields(obj, "Notification settings", {},
                         {"webhook_url": str, "webhook_secret": str, "command": list})
        command = d.get("command")
        if command is not None and not all(isinstance(a, str) for a in command):
            raise FormatError("Notification settings field 'command' has the wrong type.")
        argv = tuple(command) if command is not None else None
        problem = _notify_problem(d.get("webhook_url"), argv, d.get("webhook_secret"))
        if problem is not None:
            raise FormatError(f"Notification settings field '{problem[0]}' {problem[1]}")
        return cls(webhook_url=d.get("webhook_url"), command=argv, webhook_secret=d.get("webhook_secret"))

    def to_dict(self) -> dict[str, Any]:
        """The wire/state shape, secret included: send it only inside the signed management API."""
        out: dict[str, Any] = {}
        if self.webhook_url is not None:
            out["webhook_url"] = self.webhook_url
        if self.webhook_secret is not None:
            out["webhook_secret"] = self.webhook_secret
        if self.command is not None:
            out["command"] = list(self.command)
        return out

    @classmethod
    def from_settings(cls, table: Mapping[str, Any], where: str, secret: str | None) -> NotifySettings:
        """A developer's ``notify`` table: ``webhook = "https://..."`` and/or
        ``command = ["/path/to/program", "arg"]``; ``secret`` is the env's webhook secret from
        tako-backups.toml (decrypted), or None. Raises ConfigError naming the key and the fix (never
        the value)."""
        unknown = sorted(set(table) - {"webhook", "command"})
        if unknown:
            raise ConfigError(f"Unknown key '{printable(str(unknown[0]), 40)}' in notify of {where}; "
                              "the keys are webhook and command.")
        url, command = table.get("webhook"), table.get("command")
        if url is not None and not isinstance(url, str):
            raise ConfigError(f"`notify.webhook` in {where} must be a URL string such as "
                              "\"https://hooks.example.com/tako\".")
        if command is not None and (not isinstance(command, list)
                                    or not all(isinstance(a, str) for a in command)):
            raise ConfigError(f"`notify.command` in {where} must be a list of strings such as "
                              "[\"/usr/local/bin/page-me\", \"--quiet\"] (it runs without a shell).")
        argv = tuple(command) if command is not None else None
        url = url.strip() if url is not None else None
        problem = _notify_problem(url, argv, secret)
        if problem is not None:
            name, message = problem
            subject = ("The webhook secret" if name == "webhook_secret"
                       else f"`notify.{'webhook' if name == 'webhook_url' else name}`")
            raise ConfigError(f"{subject} for {where} {message}")
        return cls(webhook_url=url, command=argv, webhook_secret=secret)


def _notify_problem(url: str | None, command: tuple[str, ...] | None,
                    secret: str | None) -> tuple[str, str] | None:
    """The first rule broken, as (wire field, ``must ...`` sentence); never repeats a value."""
    if url is None and command is None:
        return "webhook_url", "must be set, or a command (or leave notifications out)."
    if url is not None:
        problem = _webhook_problem(url)
        if problem is not None:
            return "webhook_url", problem
    if command is not None:
        if not command or not command[0].strip():
            return "command", "must name a program, like [\"/usr/local/bin/page-me\"]."
        if len(command) > 64 or any("\0" in a or len(a) > 4096 for a in command):
            return "command", "must have at most 64 arguments of at most 4096 characters, without NUL."
    if secret is not None:
        if url is None:
            return "webhook_secret", "is set but there is no webhook; add a webhook or remove the secret."
        if not MIN_SECRET <= len(secret) <= 1024 or not secret.isprintable():
            return "webhook_secret", (f"must be {MIN_SECRET} to 1024 printable characters; "
                                      "generate one with `openssl rand -hex 32`.")
    return None


def _webhook_problem(url: str) -> str | None:
    """The storage endpoint rule (storage/endpoints.py) for webhooks: https, or plain http only to
    a loopback host; no credentials or fragment. Unlike an endpoint, a query is allowed (receivers
    put tokens there)."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError:
        return "is not a valid URL; use https://host/path."
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or len(url) > 2048:
        return "must be an https:// URL with a host, like https://hooks.example.com/tako."
    if parts.username is not None or parts.password is not None or parts.fragment:
        return "must not carry credentials or a fragment; put a token in the path or query instead."
    if scheme == "http" and not is_loopback_host(parts.hostname):
        return "must use https:// (http:// is allowed only for loopback hosts such as 127.0.0.1)."
    return None


def parse_env_settings(
    table: Mapping[str, Any], where: str, secret: str | None = None
) -> tuple[BackupPolicy, NotifySettings | None]:
    """One env's settings table as the CLI reads it from the settings file: the policy keys plus an
    optional ``notify`` table; ``secret`` is the env's webhook secret (decrypted), or None.
    Raises ConfigError naming the key and the fix."""
    notify = table.get("notify")
    if notify is not None and not isinstance(notify, Mapping):
        raise ConfigError(f"`notify` in {where} must be a table with webhook and/or command.")
    policy = BackupPolicy.from_settings({k: v for k, v in table.items() if k != "notify"}, where)
    if notify is None:
        if secret is not None:
            raise ConfigError(f"The webhook secret for {where} is set but there is no "
                              "notify.webhook; add one or remove the secret.")
        return policy, None
    return policy, NotifySettings.from_settings(notify, where, secret)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
