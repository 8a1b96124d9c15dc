from __future__ import annotations

import datetime as dt

import pytest

from tako_backups.cli.output import Output, format_local_time, format_size
from tako_backups.progress import Progress


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 bytes"),
        (999, "999 bytes"),
        (1023, "1023 bytes"),
        (1024, "1.00 KB"),
        (1536, "1.50 KB"),
        (2 * 1024 * 1024, "2.00 MB"),
        (5 * 1024**3 + 1024**3 // 4, "5.25 GB"),
        (3 * 1024**4, "3.00 TB"),
    ],
)
def test_sizes_are_base_1024_like_tako(size: int, text: str) -> None:
    assert format_size(size) == text


def test_local_time_format() -> None:
    moment = dt.datetime(2026, 3, 10, 15, 4, 5)
    assert format_local_time(moment.timestamp()) == "2026-03-10 15:04:05"


def test_progress_is_silent_without_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    progress: Progress = Output()
    progress.start("Uploading", total=2048)
    progress.advance(1024)
    progress.finish()
    assert capsys.readouterr() == ("", "")


def test_json_mode_prints_only_the_result_object(capsys: pytest.CaptureFixture[str]) -> None:
    out = Output(json_mode=True)
    out.heading("Backups")
    out.line("demo (production)")
    out.warning("Using production environment")
    out.result("backups list", {"app": "demo"})
    out.result("backups list", {"app": "again"})
    captured = capsys.readouterr()
    assert captured.out == '{"ok": true, "command": "backups list", "app": "demo"}\n'
    assert captured.err == "! Using production environment\n"


@pytest.mark.parametrize("json_mode", [False, True])
def test_a_dry_run_says_each_step_and_that_nothing_changed(capsys: pytest.CaptureFixture[str],
                                                           json_mode: bool) -> None:
    result = {"app": "demo", "dry_run": True, "servers": ["la"]}
    Output(json_mode=json_mode).dry_run_done("backups now", result, ["create a backup on la"],
                                             nothing="written")
    out = capsys.readouterr().out
    if json_mode:
        assert out == ('{"ok": true, "command": "backups now", "app": "demo", "dry_run": true, '
                       '"servers": ["la"]}\n')
    else:
        assert out == "Would create a backup on la\nDry run: nothing was written.\n"


def test_failures_always_carry_a_summary() -> None:
    from tako_backups.cli.targets import raise_failures

    with pytest.raises(ValueError, match="needs a summary"):
        raise_failures([], "")
