"""The notes a server's reply carries next to ``data`` (here: a bucket that may not be listed) are
printed once per server, on stderr, whatever the command."""

from __future__ import annotations

import pytest

from tako_backups.cli.replies import parse_notes
from tako_backups.core.layout import backup_prefix, index_key
from tako_backups.errors import FormatError
from tests.cli.remote_harness import Demo, Tako

NOTE = "Self-healing is off for bucket 'demo-backups': listing is denied to these credentials."


def test_each_server_says_once_that_self_healing_is_off(demo: Demo, tako: Tako) -> None:
    fleet = demo("la", "ny")
    fleet.store.deny_list = True
    created = tako("backups", "now", "--env", "production")
    assert created.exit_code == 0, created.output
    assert created.stderr == f"! la: {NOTE}\n! ny: {NOTE}\n"
    listed = tako("backups", "list", "--env", "production")
    assert listed.exit_code == 0 and listed.stderr == ""  # answered from the index: nothing skipped
    fleet.store.delete(index_key(backup_prefix("demo", "production", "la")))
    listed = tako("backups", "list", "--env", "production")
    assert listed.exit_code == 0, listed.output
    assert listed.stderr == f"! la: {NOTE}\n"
    assert listed.stdout.split("\n")[2:4] == ["la", "No backups found."]


def test_notes_must_be_strings() -> None:
    assert parse_notes({"status": "ok", "data": {}}) == []
    assert parse_notes({"status": "ok", "data": {}, "notes": ["a", "b", "a"]}) == ["a", "b"]
    with pytest.raises(FormatError, match="'notes' must be a list of strings"):
        parse_notes({"status": "ok", "data": {}, "notes": "a"})
