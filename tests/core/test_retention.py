"""Retention: Tako's age rule, restic's forget tiers, the floor, reasons, and pre-restore backups."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tako_backups.core import catalog, layout
from tako_backups.core.retention import archive_intact, select, split_expired
from tako_backups.models import (
    BackupExtras,
    BackupIndex,
    BackupInfo,
    BackupKey,
    EncryptionInfo,
    sort_newest_first,
)
from tako_backups.policy import BackupPolicy
from tako_backups.storage.memory import MemoryStore
from tests.support.backups import take_backup

DAY = 86_400
NOW = 1_800_000_000


def backup(created: int, n: int = 0, reason: str | None = None) -> BackupInfo:
    bid = f"b{created}-AAAAAAA{n % 10}"
    extras = None if reason is None else BackupExtras(files=1, bytes=1, reason=reason)
    return BackupInfo(bid, "demo", "production", "s", created, 10, "00" * 32, f"p/{bid}.tar.zst.enc",
                      f"p/{bid}.json", EncryptionInfo("backup-key-0123456789abcdef", "n", "t"), extras)


def at(text: str, n: int = 0, reason: str | None = None) -> BackupInfo:
    """A backup created at ``YYYY-MM-DD HH:MM[:SS]`` UTC."""
    when = datetime.fromisoformat(text).replace(tzinfo=UTC)
    return backup(int(when.timestamp()), n, reason)


def aged(age_days: float, n: int = 0, reason: str | None = None) -> BackupInfo:
    return backup(int(NOW - age_days * DAY), n, reason)


def stamp(info: BackupInfo) -> str:
    return datetime.fromtimestamp(info.created_at_unix_secs, UTC).strftime("%Y-%m-%d %H:%M:%S")


def kept_with_reasons(backups: list[BackupInfo], policy: BackupPolicy, now: int = NOW,
                      **kw: object) -> list[tuple[str, tuple[str, ...]]]:
    return [(stamp(k.info), k.reasons) for k in select(backups, policy, now, **kw).kept]  # type: ignore[arg-type]


# ----- Tako's age rule (split_expired keeps its old contract) -----

def test_tako_rule_without_floor() -> None:
    backups = [aged(d, i) for i, d in enumerate((0, 10, 30, 30.01, 45))]
    kept, expired = split_expired(BackupIndex(backups), NOW, 30, floor=0)
    assert [b.id for b in kept] == [b.id for b in backups[:3]]
    assert [b.id for b in expired] == [b.id for b in backups[3:]]


def test_age_counts_from_the_newest_backup_so_a_stalled_server_keeps_its_copies() -> None:
    backups = [aged(d, i) for i, d in enumerate((40, 50, 60, 80))]
    kept, expired = split_expired(BackupIndex(backups), NOW, 30, floor=0)
    assert [b.id for b in kept] == [b.id for b in backups[:3]]
    assert [b.id for b in expired] == [backups[3].id]


def test_floor_keeps_the_newest_intact_backups_only() -> None:
    backups = [aged(d, i) for i, d in enumerate((0, 40, 41, 42, 43))]
    broken = {backups[1].id}
    kept, expired = split_expired(BackupIndex(backups), NOW, 30, floor=3,
                                  intact=lambda b: b.id not in broken)
    assert [b.id for b in kept] == [backups[0].id, backups[2].id, backups[3].id]
    assert {b.id for b in expired} == {backups[1].id, backups[4].id}


def test_age_rule_reasons_name_the_window_and_the_floor() -> None:
    backups = [aged(0, 1), aged(1, 2), aged(40, 3), aged(41, 4), aged(42, 5)]
    assert [r for _, r in kept_with_reasons(backups, BackupPolicy())] == [
        ("within 30 days", "floor"), ("within 30 days", "floor"), ("floor",)]
    assert kept_with_reasons([aged(0)], BackupPolicy(retention_days=1), floor=0)[0][1] == ("within 1 day",)


def test_archive_intact_checks_existence_and_size() -> None:
    store = MemoryStore()
    good, short, missing = aged(1, 1), aged(2, 2), aged(3, 3)
    store.put_bytes(good.archive_key, b"x" * 10)
    store.put_bytes(short.archive_key, b"x" * 9)
    check = archive_intact(store)
    assert check(good) and not check(short) and not check(missing)
    assert check(dataclasses.replace(short, size_bytes=9))


# ----- restic forget tiers -----

SUNDAYS = [at(f"2019-{md} 11:00", i) for i, md in enumerate((
    "09-01", "09-08", "09-15", "09-22", "09-29", "10-06", "10-13", "10-20", "10-27", "11-03", "11-10",
    "11-17"))]


def test_restic_documented_example_keep_daily_4_keeps_the_last_four_sundays() -> None:
    newest = SUNDAYS[-1].created_at_unix_secs
    kept = kept_with_reasons(SUNDAYS, BackupPolicy(keep_daily=4), now=newest, floor=0)
    last_four = ("11-17", "11-10", "11-03", "10-27")
    assert kept == [(f"2019-{day} 11:00:00", (f"daily 2019-{day}",)) for day in last_four]


def test_restic_documented_daily_weekly_monthly_overlap() -> None:
    """One backup a day for two years, newest on a Sunday: keep 7 daily, 5 weekly, 12 monthly keeps
    the 7 dailies, 4 more weeklies (the dailies hold one) and the month-ends not already kept."""
    first = datetime(2024, 1, 1, 3, tzinfo=UTC)
    days = [backup(int((first + timedelta(days=i)).timestamp()), i) for i in range(728)]
    assert stamp(days[-1]) == "2025-12-28 03:00:00"
    kept = kept_with_reasons(days, BackupPolicy(keep_daily=7, keep_weekly=5, keep_monthly=12), floor=0)
    assert [d for d, _ in kept] == [f"2025-{md} 03:00:00" for md in (
        "12-28", "12-27", "12-26", "12-25", "12-24", "12-23", "12-22", "12-21", "12-14", "12-07", "11-30",
        "10-31", "09-30", "08-31", "07-31", "06-30", "05-31", "04-30", "03-31", "02-28", "01-31")]
    reasons = dict(kept)
    assert reasons["2025-12-28 03:00:00"] == ("daily 2025-12-28", "weekly 2025-W52", "monthly 2025-12")
    assert reasons["2025-11-30 03:00:00"] == ("weekly 2025-W48", "monthly 2025-11")
    assert reasons["2025-01-31 03:00:00"] == ("monthly 2025-01",)


def restic_test_snapshots() -> list[BackupInfo]:
    """The snapshot times of restic's TestApplyPolicy (internal/data/snapshot_policy_test.go),
    whole seconds; the duplicate times stay duplicates (with different ids)."""
    times = []
    for year in ("2014", "2015"):
        for month, days in (("09", "01 02 05 06 08 09 10 11 20 22"), ("08", "08 10 12 13 13 15 18 20 21 22"),
                            ("10", "01 02 05 06 08 09 10 11 20 22"), ("11", "08 10 12 13 13 15 18 20 21 22")):
            times += [f"{year}-{month}-{d} 10:20:30" for d in days.split()]
            if (year, month) == ("2015", "10"):
                times += ["2015-10-22 10:20:30"] * 4
    times += [f"2016-01-{t}" for t in (
        "01 01:02:03", "01 01:03:03", "01 07:08:03", "03 07:02:03", "04 10:23:03", "04 11:23:03",
        "04 12:23:03", "04 12:24:03", "04 12:28:03", "04 12:30:03", "04 16:23:03", "05 09:02:03",
        "06 08:02:03", "07 10:02:03", "08 20:02:03", "09 21:02:03", "12 21:02:03", "12 21:08:03",
        "18 12:02:03")]
    return [at(t, i) for i, t in enumerate(times)]


JAN_2016 = ["2016-01-18 12:02:03", "2016-01-12 21:08:03", "2016-01-09 21:02:03", "2016-01-08 20:02:03",
            "2016-01-07 10:02:03", "2016-01-06 08:02:03", "2016-01-05 09:02:03", "2016-01-04 16:23:03"]


@pytest.mark.parametrize(("policy", "expected"), [
    (BackupPolicy(keep_last=10), [(t, "last") for t in [*JAN_2016[:2], "2016-01-12 21:02:03", *JAN_2016[2:],
                                                        "2016-01-04 12:30:03"]]),
    (BackupPolicy(keep_hourly=20), [(t, "hourly") for t in [
        *JAN_2016, "2016-01-04 12:30:03", "2016-01-04 11:23:03", "2016-01-04 10:23:03", "2016-01-03 07:02:03",
        "2016-01-01 07:08:03", "2016-01-01 01:03:03", "2015-11-22 10:20:30", "2015-11-21 10:20:30",
        "2015-11-20 10:20:30", "2015-11-18 10:20:30", "2015-11-15 10:20:30", "2015-11-13 10:20:30"]]),
    (BackupPolicy(keep_daily=3), [(t, "daily") for t in JAN_2016[:3]]),
    (BackupPolicy(keep_daily=10), [(t, "daily") for t in [*JAN_2016, "2016-01-03 07:02:03",
                                                          "2016-01-01 07:08:03"]]),
    (BackupPolicy(keep_last=5, keep_daily=5), [
        (JAN_2016[0], "last daily"), (JAN_2016[1], "last daily"), ("2016-01-12 21:02:03", "last"),
        (JAN_2016[2], "last daily"), (JAN_2016[3], "last daily"), (JAN_2016[4], "daily")]),
    (BackupPolicy(keep_weekly=4), [(t, "weekly") for t in [*JAN_2016[:3], "2016-01-03 07:02:03"]]),
    (BackupPolicy(keep_daily=3, keep_weekly=4), [
        (JAN_2016[0], "daily weekly"), (JAN_2016[1], "daily weekly"), (JAN_2016[2], "daily weekly"),
        ("2016-01-03 07:02:03", "weekly")]),
    (BackupPolicy(keep_monthly=6), [(t, "monthly") for t in [
        JAN_2016[0], "2015-11-22 10:20:30", "2015-10-22 10:20:30", "2015-09-22 10:20:30",
        "2015-08-22 10:20:30", "2014-11-22 10:20:30"]]),
    (BackupPolicy(keep_daily=2, keep_weekly=2, keep_monthly=6), [
        (JAN_2016[0], "daily weekly monthly"), (JAN_2016[1], "daily weekly"),
        *[(t, "monthly") for t in ("2015-11-22 10:20:30", "2015-10-22 10:20:30", "2015-09-22 10:20:30",
                                   "2015-08-22 10:20:30", "2014-11-22 10:20:30")]]),
])
def test_tiers_match_restic_apply_policy(policy: BackupPolicy, expected: list[tuple[str, str]]) -> None:
    """Expected outcomes are restic's golden files for the same snapshots and policies."""
    snapshots = restic_test_snapshots()
    kept = kept_with_reasons(snapshots, policy, now=snapshots[-1].created_at_unix_secs, floor=0)
    assert [(t, " ".join(r.split()[0] for r in reasons)) for t, reasons in kept] == expected


def test_a_tier_with_counts_left_also_keeps_the_oldest_backup() -> None:
    backups = [at("2026-12-03 09:00", 1), at("2026-12-02 09:00", 2), at("2026-12-01 18:00", 3),
               at("2026-12-01 06:00", 4)]
    assert kept_with_reasons(backups, BackupPolicy(keep_daily=30), floor=0) == [
        ("2026-12-03 09:00:00", ("daily 2026-12-03",)), ("2026-12-02 09:00:00", ("daily 2026-12-02",)),
        ("2026-12-01 18:00:00", ("daily 2026-12-01",)), ("2026-12-01 06:00:00", ("oldest daily 2026-12-01",))]
    assert len(select(backups, BackupPolicy(keep_daily=3), NOW, floor=0).kept) == 3


def test_hourly_labels_and_iso_weeks_across_new_year() -> None:
    backups = [at("2027-01-04 08:00", 1), at("2027-01-02 23:30", 2), at("2026-12-31 10:15", 3),
               at("2026-12-20 10:00", 4)]
    assert kept_with_reasons(backups, BackupPolicy(keep_weekly=2, keep_hourly=1), floor=0) == [
        ("2027-01-04 08:00:00", ("hourly 2027-01-04T08", "weekly 2027-W01")),
        ("2027-01-02 23:30:00", ("weekly 2026-W53",))]


def test_floor_adds_to_tiers_and_a_backup_gathers_every_reason() -> None:
    backups = [at("2026-12-01 10:40", 1), at("2026-12-01 10:10", 2), at("2026-11-30 22:00", 3),
               at("2026-11-02 10:00", 4)]
    policy = BackupPolicy(keep_last=1, keep_hourly=1, keep_daily=1, keep_monthly=1)
    assert kept_with_reasons(backups, policy) == [
        ("2026-12-01 10:40:00",
         ("last", "hourly 2026-12-01T10", "daily 2026-12-01", "monthly 2026-12", "floor")),
        ("2026-12-01 10:10:00", ("floor",)), ("2026-11-30 22:00:00", ("floor",))]


# ----- pre-restore safety backups (issue 14) -----

def test_pre_restore_backups_never_take_a_floor_place() -> None:
    safety = [aged(0.1 * i, 10 + i, "pre-restore") for i in range(3)]
    regular = [aged(d, i, "scheduled") for i, d in enumerate((40, 75, 76, 77))]
    chosen = select(safety + regular, BackupPolicy(), NOW)
    reasons = chosen.reasons()
    assert [reasons[b.id] for b in regular[:3]] == [("within 30 days", "floor"), ("floor",), ("floor",)]
    assert [b.id for b in chosen.expired] == [regular[3].id]
    assert all(reasons[b.id] == ("within 30 days",) for b in safety)


def test_restores_on_a_stalled_server_never_prune_its_last_good_backups(tmp_path: Path,
                                                                        key: BackupKey) -> None:
    """Issue 14 end to end through the pipeline: three restores on a server whose scheduled backups
    stopped 40 days ago used to make the three safety backups the whole floor and the age
    reference, so every regular backup was deleted."""
    store, data = MemoryStore(), tmp_path / "data"
    for part in ("app", "tako"):
        (data / part).mkdir(parents=True)
        (data / part / "file.txt").write_text(part)

    def take(age_days: float, reason: str) -> BackupInfo:
        return take_backup(store, data, key, work=tmp_path / "work", now=int(NOW - age_days * DAY),
                           reason=reason).info

    regular = [take(d, "scheduled") for d in (77, 76, 75, 40)][::-1]
    safety = [take(d, "pre-restore") for d in (0.003, 0.002, 0.001)][::-1]
    index = catalog.read_index(store, layout.backup_prefix("demo", "production", "la"))
    assert [b.id for b in index.backups] == [b.id for b in safety + regular[:3]]
    assert regular[3].archive_key not in store.objects and regular[2].archive_key in store.objects


def test_pre_restore_backups_do_not_move_the_age_reference() -> None:
    regular = [aged(d, i, "scheduled") for i, d in enumerate((40, 55, 69, 71))]
    chosen = select([aged(0, 9, "pre-restore"), *regular], BackupPolicy(retention_days=30), NOW, floor=0)
    assert [b.id for b in chosen.expired] == [regular[3].id]


def test_a_pre_restore_backup_does_not_push_a_good_backup_out_of_its_day() -> None:
    scheduled = [at("2026-12-01 03:00", 1, "scheduled"), at("2026-11-30 03:00", 2, "scheduled"),
                 at("2026-11-29 03:00", 3, "scheduled")]
    safety = at("2026-12-01 15:00", 4, "pre-restore")
    kept = kept_with_reasons([safety, *scheduled], BackupPolicy(keep_daily=2), floor=0)
    assert kept == [("2026-12-01 15:00:00", ("pre-restore",)), ("2026-12-01 03:00:00", ("daily 2026-12-01",)),
                    ("2026-11-30 03:00:00", ("daily 2026-11-30",))]


def test_pre_restore_backups_live_as_long_as_the_history_around_them() -> None:
    scheduled = [at(f"2026-12-0{d} 03:00", d, "scheduled") for d in (5, 4, 3)]
    old_safety = at("2026-12-02 12:00", 7, "pre-restore")
    new_safety = at("2026-12-04 12:00", 8, "pre-restore")
    chosen = select([new_safety, old_safety, *scheduled], BackupPolicy(keep_last=3), NOW)
    assert chosen.reasons()[new_safety.id] == ("pre-restore",)
    assert [b.id for b in chosen.expired] == [old_safety.id]


def test_keep_last_counts_regular_backups_only() -> None:
    regular = [at("2026-12-01 03:00", 1, "manual"), at("2026-11-30 03:00", 2, "post-deploy")]
    safety = [at(f"2026-12-01 1{h}:00", 3 + h, "pre-restore") for h in range(4)]
    chosen = select(regular + safety, BackupPolicy(keep_last=2), NOW, floor=0)
    assert [chosen.reasons()[b.id] for b in regular] == [("last",), ("last",)]


def test_safety_backups_fill_the_floor_only_when_too_few_regular_backups_are_intact() -> None:
    regular = [aged(50, 1, "scheduled"), aged(60, 2, "scheduled")]
    safety = [aged(70, 3, "pre-restore"), aged(71, 4, "pre-restore"), aged(72, 5, "pre-restore")]
    broken = {regular[0].id}
    chosen = select(regular + safety, BackupPolicy(retention_days=1), NOW,
                    intact=lambda b: b.id not in broken)
    assert [(k.info.id, k.reasons) for k in chosen.kept] == [
        (regular[0].id, ("within 1 day",)), (regular[1].id, ("floor",)), (safety[0].id, ("floor",)),
        (safety[1].id, ("floor",))]
    assert chosen.expired == [safety[2]]


# ----- invariants over random histories -----

HOUR = 3_600
histories = st.lists(st.tuples(st.integers(0, 90 * 24), st.booleans()), max_size=40, unique_by=lambda t: t[0])
policies = st.one_of(
    st.builds(BackupPolicy, retention_days=st.integers(1, 40)),
    st.builds(BackupPolicy, keep_last=st.none() | st.integers(1, 5),
              keep_hourly=st.none() | st.integers(1, 30), keep_daily=st.integers(1, 10),
              keep_weekly=st.none() | st.integers(1, 5), keep_monthly=st.none() | st.integers(1, 3)),
)


@settings(max_examples=150, deadline=None)
@given(histories, policies)
def test_safety_backups_never_change_what_happens_to_regular_backups(
        history: list[tuple[int, bool]], policy: BackupPolicy) -> None:
    backups = [backup(NOW - hours * HOUR, i, "pre-restore" if safety else "scheduled")
               for i, (hours, safety) in enumerate(history)]
    regular = sort_newest_first([b for b in backups if b.extras and b.extras.reason == "scheduled"])
    with_safety, without = select(backups, policy, NOW), select(regular, policy, NOW)
    assert {k.info.id: k.reasons for k in with_safety.kept if k.info in regular} == without.reasons()
    assert {b.id for b in with_safety.expired} | set(with_safety.reasons()) == {b.id for b in backups}
    assert set(without.reasons()) >= {b.id for b in regular[:3]}
