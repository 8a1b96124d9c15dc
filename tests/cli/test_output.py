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


# ----- what long server commands report (issue 14) -----

def test_progress_text_names_the_server_phase_bytes_share_and_rate() -> None:
    from tako_backups.cli.progress_view import progress_text

    data = {"operation": "restore", "phase": "download+extract", "bytes_done": 3 << 20,
            "bytes_total": 12 << 20, "bytes_per_second": 1.5 * (1 << 20), "started_at_unix_secs": 1}
    assert progress_text("la", data) == "la: download+extract 3.00 MB of 12.00 MB (25%), 1.50 MB/s"
    unknown = {**data, "phase": "archive+upload", "bytes_total": None, "bytes_per_second": 0}
    assert progress_text("ny", unknown) == "ny: archive+upload 3.00 MB"


def test_plain_progress_lines_come_every_few_seconds_and_never_with_json() -> None:
    import io

    from tako_backups.cli.output import PLAIN_EVERY
    from tako_backups.cli.progress_view import ServerProgress

    now = [100.0]
    stream = io.StringIO()
    data = {"phase": "archive+upload", "bytes_done": 1024, "bytes_total": 2048, "bytes_per_second": 0}
    lines = ServerProgress("Creating backup", ["la", "ny"], "lines", stream=stream, clock=lambda: now[0])
    with lines as view:
        view.update("la", data)
        now[0] += PLAIN_EVERY - 0.1
        view.update("la", data)
        assert stream.getvalue() == ""
        now[0] += 0.1
        view.update("la", data)
        view.update("ny", None)  # nothing reported yet
        view.update("la", data)
    assert stream.getvalue() == "la: archive+upload 1.00 KB of 2.00 KB (50%)\n"
    assert Output(json_mode=True).progress_mode() == "off"
    quiet = io.StringIO()
    with ServerProgress("Creating backup", ["la"], "off", stream=quiet, clock=lambda: now[0]) as view:
        now[0] += 60
        view.update("la", data)
    assert quiet.getvalue() == ""


def test_local_progress_prints_plain_lines_when_stderr_is_not_a_terminal(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import tako_backups.cli.output as output

    monkeypatch.setenv("TAKO_PROGRESS", "auto")
    now = [0.0]
    monkeypatch.setattr(output.time, "monotonic", lambda: now[0])
    out = Output()
    out.start("Downloading b1", total=4096)
    out.advance(1024)
    now[0] = output.PLAIN_EVERY
    out.advance(1024)
    out.finish()
    assert capsys.readouterr().err == "Downloading b1: 2.00 KB of 4.00 KB (50%)\n"
    silent = Output(json_mode=True)
    silent.start("Downloading b1", total=4096)
    now[0] += 60
    silent.advance(4096)
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(("setting", "mode"), [("off", "off"), ("lines", "lines"), ("bars", "bars"),
                                               ("auto", "lines"), ("nonsense", "lines")])
def test_tako_progress_chooses_how_progress_is_shown(monkeypatch: pytest.MonkeyPatch, setting: str,
                                                     mode: str) -> None:
    monkeypatch.setenv("TAKO_PROGRESS", setting)  # stderr is not a terminal under pytest
    assert Output().progress_mode() == mode
    assert Output(json_mode=True).progress_mode() == "off"
