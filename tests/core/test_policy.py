"""Backup policy and notification settings: strict wire shape, developer settings, descriptions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tako_backups.errors import ConfigError, FormatError
from tako_backups.models import BackupExtras, BackupInfo, EncryptionInfo
from tako_backups.policy import (
    BackupPolicy,
    NotifySettings,
    format_every,
    newest_regular,
    parse_env_settings,
    parse_every,
)

WHERE = "[envs.production] of tako-backups.toml"
SECRET = "whsec-0123456789abcdef-do-not-show"
HOOK = "https://hooks.example.com/services/T000/B000/tok3n-do-not-show?key=also-secret"


@pytest.mark.parametrize(("text", "seconds"), [
    ("15m", 900), ("1h", 3_600), ("90m", 5_400), ("1h30m", 5_400), ("24h", 86_400), ("1d", 86_400),
    (" 2H ", 7_200), ("45m", 2_700),
])
def test_parse_every_reads_human_durations(text: str, seconds: int) -> None:
    assert parse_every(text) == seconds
    assert parse_every(format_every(seconds)) == seconds


@pytest.mark.parametrize("text", ["14m", "25h", "2d", "0m", "", "1", "1 hour", "1.5h", "m", "-1h", "1m1h"])
def test_parse_every_refuses_what_is_not_a_duration_in_bounds(text: str) -> None:
    with pytest.raises(ValueError):
        parse_every(text)


def test_format_every_prefers_hours_then_minutes() -> None:
    assert [format_every(s) for s in (86_400, 3_600, 5_400, 900)] == ["24h", "1h", "90m", "15m"]


@pytest.mark.parametrize(("policy", "text"), [
    (BackupPolicy(), "every 24h, keeps 30 days"),
    (BackupPolicy(every=3_600, keep_hourly=24, keep_daily=30, keep_monthly=12),
     "every 1h, keeps 24 hourly, 30 daily, 12 monthly"),
    (BackupPolicy(every=900, keep_last=5, keep_weekly=8), "every 15m, keeps last 5, 8 weekly"),
    (BackupPolicy(every=5_400, retention_days=1), "every 90m, keeps 1 day"),
    (BackupPolicy(retention_days=7), "every 24h, keeps 7 days"),
])
def test_describe(policy: BackupPolicy, text: str) -> None:
    assert policy.describe() == text


@pytest.mark.parametrize(("policy", "wire"), [
    (BackupPolicy(), {"every_seconds": 86_400, "retention_days": 30}),
    (BackupPolicy(every=3_600, keep_hourly=24, keep_daily=30, keep_monthly=12),
     {"every_seconds": 3_600, "keep_hourly": 24, "keep_daily": 30, "keep_monthly": 12}),
    (BackupPolicy(every=900, keep_last=3, keep_weekly=4),
     {"every_seconds": 900, "keep_last": 3, "keep_weekly": 4}),
])
def test_policy_wire_shape_round_trips(policy: BackupPolicy, wire: dict[str, Any]) -> None:
    assert policy.to_dict() == wire
    assert BackupPolicy.from_dict(json.loads(json.dumps(wire))) == (
        policy if policy.tiered else BackupPolicy(every=policy.every, retention_days=policy.days))
    assert BackupPolicy.from_dict(wire).to_dict() == wire


@pytest.mark.parametrize(("wire", "message"), [
    ([], "Backup policy must be a JSON object."),
    ({"retention_days": 30}, "Backup policy is missing field 'every_seconds'."),
    ({"every_seconds": 3600}, "Backup policy needs 'retention_days' or at least one keep_* count."),
    ({"every_seconds": 3600, "keep_yearly": 2}, "Backup policy has unknown field 'keep_yearly'."),
    ({"every_seconds": "1h", "retention_days": 30},
     "Backup policy field 'every_seconds' has the wrong type."),
    ({"every_seconds": 3600, "keep_daily": True}, "Backup policy field 'keep_daily' has the wrong type."),
    ({"every_seconds": 60, "retention_days": 30},
     "Backup policy field 'every_seconds' must be between 15m and 24h, written like 15m, 1h, 90m or 24h "
     "(900 to 86400 seconds)."),
    ({"every_seconds": 3600, "keep_daily": 0},
     "Backup policy field 'keep_daily' must be a whole number of at least 1; leave it out for no daily "
     "tier."),
    ({"every_seconds": 3600, "keep_daily": 7, "retention_days": 30},
     "Backup policy field 'retention_days' cannot be combined with keep_* counts; use either "
     "retention_days or the tiers."),
])
def test_policy_wire_shape_is_strict(wire: Any, message: str) -> None:
    with pytest.raises(FormatError) as err:
        BackupPolicy.from_dict(wire)
    assert str(err.value) == message


def test_settings_table_with_defaults_and_tiers() -> None:
    assert BackupPolicy.from_settings({}, WHERE) == BackupPolicy()
    table = {"every": "1h", "keep_hourly": 24, "keep_daily": 30, "keep_monthly": 12}
    expected = BackupPolicy(every=3_600, keep_hourly=24, keep_daily=30, keep_monthly=12)
    assert BackupPolicy.from_settings(table, WHERE) == expected
    assert BackupPolicy.from_settings({"retention_days": 7}, WHERE) == BackupPolicy(retention_days=7)


@pytest.mark.parametrize(("table", "message"), [
    ({"every": "5m"}, f"`every` in {WHERE} must be a duration between 15m and 24h, written like 15m, 1h, "
                      "90m or 24h, not '5m'."),
    ({"every": 3600}, f"`every` in {WHERE} must be a duration between 15m and 24h, written like 15m, 1h, "
                      "90m or 24h, not 3600."),
    ({"keep_daily": 0}, f"`keep_daily` in {WHERE} must be a whole number of at least 1; leave it out for no "
                        "daily tier."),
    ({"keep_weekly": "4"}, f"`keep_weekly` in {WHERE} must be a whole number of at least 1; leave it out for "
                           "no weekly tier."),
    ({"retention_days": 0}, f"`retention_days` in {WHERE} must be a whole number of at least 1; leave it out "
                            "to keep Tako's 30 days."),
    ({"retention_days": 7, "keep_daily": 7}, f"`retention_days` in {WHERE} cannot be combined with keep_* "
                                             "counts; use either retention_days or the tiers."),
    ({"keep_yearly": 3}, f"Unknown key 'keep_yearly' in {WHERE}; the keys are every, retention_days, "
                         "keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly and notify."),
])
def test_settings_errors_name_the_key_and_the_fix(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        BackupPolicy.from_settings(table, WHERE)
    assert str(err.value) == message


def test_a_policy_built_in_code_is_checked_too() -> None:
    with pytest.raises(ValueError, match="'every' must be between 15m and 24h"):
        BackupPolicy(every=60)
    with pytest.raises(ValueError, match="'keep_last' must be a whole number"):
        BackupPolicy(keep_last=-1)


def _info(created: int, n: int, reason: str | None) -> BackupInfo:
    extras = None if reason is None else BackupExtras(files=1, bytes=1, reason=reason)
    return BackupInfo(f"b{created}-AAAAAAA{n}", "demo", "production", "s", created, 1, "0" * 64, "a", "m",
                      EncryptionInfo("backup-key-0123456789abcdef", "n", "t"), extras)


def test_newest_regular_skips_pre_restore_safety_backups() -> None:
    old, tako, safety = _info(100, 1, "scheduled"), _info(200, 2, None), _info(300, 3, "pre-restore")
    assert newest_regular([old, safety, tako]) == tako
    assert newest_regular([safety]) is None
    assert newest_regular([]) is None


# ----- notification settings -----

def test_notify_wire_shape_round_trips_with_the_secret() -> None:
    settings = NotifySettings(webhook_url=HOOK, command=("/usr/local/bin/page-me", "--token", "t0k"),
                              webhook_secret=SECRET)
    wire = settings.to_dict()
    assert wire == {"webhook_url": HOOK, "webhook_secret": SECRET,
                    "command": ["/usr/local/bin/page-me", "--token", "t0k"]}
    assert NotifySettings.from_dict(json.loads(json.dumps(wire))) == settings
    assert NotifySettings.from_dict({"command": ["notify-send"]}) == NotifySettings(command=("notify-send",))


def test_secrets_never_show_in_repr_description_or_summary() -> None:
    settings = NotifySettings(webhook_url=HOOK, command=("/usr/local/bin/page-me", "--token", "t0k"),
                              webhook_secret=SECRET)
    shown = " ".join([repr(settings), str(settings), settings.describe(), json.dumps(settings.summary())])
    for secret in (SECRET, "tok3n", "also-secret", "t0k"):
        assert secret not in shown
    assert settings.describe() == ("webhook https://hooks.example.com/… (signed), "
                                   "command /usr/local/bin/page-me …")
    assert settings.summary() == {"webhook": "https://hooks.example.com/…",
                                  "command": "/usr/local/bin/page-me …", "signed": True}
    assert NotifySettings(command=("/bin/true",)).summary() == {"webhook": None, "command": "/bin/true",
                                                                "signed": False}


@pytest.mark.parametrize(("wire", "message"), [
    ({}, "Notification settings field 'webhook_url' must be set, or a command (or leave notifications out)."),
    ({"webhook_url": "http://hooks.example.com/x"},
     "Notification settings field 'webhook_url' must use https:// (http:// is allowed only for loopback "
     "hosts such as 127.0.0.1)."),
    ({"webhook_url": "https://user:pw@hooks.example.com/x"},
     "Notification settings field 'webhook_url' must not carry credentials or a fragment; put a token in the "
     "path or query instead."),
    ({"webhook_url": "ftp://hooks.example.com/x"},
     "Notification settings field 'webhook_url' must be an https:// URL with a host, like "
     "https://hooks.example.com/tako."),
    ({"webhook_url": "https://hooks.example.com:99999/x"},
     "Notification settings field 'webhook_url' is not a valid URL; use https://host/path."),
    ({"command": []}, "Notification settings field 'command' must name a program, like "
                      "[\"/usr/local/bin/page-me\"]."),
    ({"command": ["ok", 3]}, "Notification settings field 'command' has the wrong type."),
    ({"command": ["/bin/x"], "webhook_secret": SECRET},
     "Notification settings field 'webhook_secret' is set but there is no webhook; add a webhook or remove "
     "the secret."),
    ({"webhook_url": HOOK, "webhook_secret": "short"},
     "Notification settings field 'webhook_secret' must be 16 to 1024 printable characters; generate one "
     "with `openssl rand -hex 32`."),
    ({"webhook_url": HOOK, "events": ["x"]}, "Notification settings has unknown field 'events'."),
])
def test_notify_wire_shape_is_strict_and_never_repeats_values(wire: dict[str, Any], message: str) -> None:
    with pytest.raises(FormatError) as err:
        NotifySettings.from_dict(wire)
    assert str(err.value) == message


def test_loopback_webhooks_may_use_plain_http() -> None:
    for url in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "http://[::1]:9/x"):
        assert NotifySettings(webhook_url=url).webhook_url == url


def test_env_settings_read_policy_notify_and_the_secret() -> None:
    policy, notify = parse_env_settings(
        {"every": "1h", "keep_hourly": 24, "notify": {"webhook": f" {HOOK} ", "command": ["/bin/page"]}},
        WHERE, SECRET)
    assert policy == BackupPolicy(every=3_600, keep_hourly=24)
    assert notify == NotifySettings(webhook_url=HOOK, command=("/bin/page",), webhook_secret=SECRET)
    assert parse_env_settings({}, WHERE) == (BackupPolicy(), None)


@pytest.mark.parametrize(("table", "secret", "message"), [
    ({"notify": {"webhook": "http://hooks.example.com/tok3n"}}, None,
     f"`notify.webhook` for {WHERE} must use https:// (http:// is allowed only for loopback hosts such as "
     "127.0.0.1)."),
    ({"notify": {"url": HOOK}}, None,
     f"Unknown key 'url' in notify of {WHERE}; the keys are webhook and command."),
    ({"notify": {"command": "/bin/page --all"}}, None,
     f"`notify.command` in {WHERE} must be a list of strings such as [\"/usr/local/bin/page-me\", "
     "\"--quiet\"] (it runs without a shell)."),
    ({"notify": {"webhook": HOOK}}, "short",
     f"The webhook secret for {WHERE} must be 16 to 1024 printable characters; generate one "
     "with `openssl rand -hex 32`."),
    ({}, SECRET, f"The webhook secret for {WHERE} is set but there is no notify.webhook; add "
                 "one or remove the secret."),
    ({"notify": "https://x"}, None, f"`notify` in {WHERE} must be a table with webhook and/or command."),
])
def test_env_settings_errors(table: dict[str, Any], secret: str | None, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_env_settings(table, WHERE, secret)
    assert str(err.value) == message
    assert "tok3n" not in str(err.value)
