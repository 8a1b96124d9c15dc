"""What the CLI prints for the management replies: Tako's lines (list, status, now, deploy) and
ours (drills, overdue backups, rebuilt indexes, restore previews, safety backups, reply notes,
retention reasons, the second copy and notifications).

Functions named ``*_line`` return one line; the others print through the run's
:class:`~.output.Output` (stdout lines, stderr warnings).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..models import BackupInfo
from .output import format_local_time, format_size

if TYPE_CHECKING:
    from .output import Output
    from .replies import BackupStatus, CopyReport, CopyStatus, Finalized, Restored, Source

OVERDUE_HOURS = 26  # what a server that does not say (an older tako-server) used
REINDEX_WAS = {"ok": "the old one was readable", "missing": "it was missing",
               "unreadable": "it was unreadable"}


def backup_line(info: BackupInfo) -> str:
    """Tako's ``{id} {YYYY-MM-DD HH:MM:SS local} {size}``, then the reason our server records
    (``pre-restore``, ``scheduled``, ``manual``, ``post-deploy``, ``reencrypt``); a backup of
    Tako's server has none, and its line is Tako's exactly."""
    line = f"{info.id} {format_local_time(info.created_at_unix_secs)} {format_size(info.size_bytes)}"
    reason = info.extras.reason if info.extras is not None else None
    return line if not reason else f"{line} {reason}"


def listed_line(info: BackupInfo, copy: CopyStatus | None, why: dict[str, list[str]] | None) -> str:
    """Tako's :func:`backup_line`, then (our server) whether the copy has it and, with ``--why``,
    why retention keeps it: ``...  copy: yes  kept: hourly 2026-12-01T10, daily 2026-12-01``."""
    line = backup_line(info)
    if copy is not None:
        has = "?" if copy.state == "unknown" else ("missing" if info.id in copy.missing else "yes")
        line += f"  copy: {has}"
    if why is not None:
        reasons = why.get(info.id)
        line += f"  kept: {', '.join(reasons)}" if reasons else "  kept: no (goes at the next backup)"
    return line


def created_line(server: str, info: BackupInfo) -> str:
    """``{server}: {id} ({size})``."""
    return f"{server}: {info.id} ({format_size(info.size_bytes)})"


def status_line(server: str, status: BackupStatus) -> str:
    """``{server}: disabled`` or ``{server}: enabled, last {id} at {time}`` (or ``no backups
    yet``) ``, next {time}, {N}d retention``."""
    if not status.enabled:
        return f"{server}: disabled"
    last = status.last_backup
    last_text = ("no backups yet" if last is None
                 else f"last {last.id} at {format_local_time(last.created_at_unix_secs)}")
    nxt = status.next_backup_at_unix_secs
    next_text = "-" if nxt is None else format_local_time(nxt)
    days = status.retention_days
    retention = "retention unknown" if days is None else f"{days}d retention"
    if status.policy_text is not None:
        retention = status.policy_text
    return f"{server}: enabled, {last_text}, next {next_text}, {retention}"


def finalize_line(server: str, result: Finalized) -> str:
    """``{server}: deployed, backup {id} ({size})`` / ``..., backup failed: {message}`` /
    ``..., backups disabled``."""
    if result.status == "created":
        assert result.size_bytes is not None
        return f"{server}: deployed, backup {result.backup_id} ({format_size(result.size_bytes)})"
    if result.status == "failed":
        return f"{server}: deployed, backup failed: {result.message}"
    return f"{server}: deployed, backups disabled"


def copy_report(out: Output, server: str, report: CopyReport | None) -> None:
    """After a new backup (``now``, deploy): its copy is done (stdout) or failed (a warning)."""
    if report is None:
        return
    if report.status == "ok":
        out.line(f"{server}: copied to bucket {report.bucket}" +
                 ("" if report.state == "ok" else " (older backups are still missing there)"))
    else:
        out.warning(f"{server}: the copy to bucket {report.bucket} failed: {report.error} The backup "
                    "itself is fine; the copy is retried at the next scheduled backup, or run "
                    "`tako backups sync`.")


def copy_notes(out: Output, server: str, copy: CopyStatus | None) -> None:
    """The second copy's state: up to date (stdout), not written yet, or lagging (a warning)."""
    if copy is None:
        return
    where = f"{server}: copy in bucket {copy.bucket}"
    if copy.state == "unknown":
        out.line(f"{where}: nothing copied yet")
    elif copy.state == "ok":
        when = "" if copy.at_unix_secs is None else f" (as of {format_local_time(copy.at_unix_secs)})"
        out.line(f"{where}: up to date{when}")
    else:
        missing = len(copy.missing)
        count = f"{missing} backup{'' if missing == 1 else 's'} missing" if missing else "behind"
        error = f" (last error: {copy.error})" if copy.error else ""
        out.warning(f"{where} is lagging: {count}{error}; it catches up at the next scheduled backup, "
                    "or run `tako backups sync`.")


def source_note(out: Output, what: str, source: Source | None) -> None:
    """Which copy a read used (our server, apps with a copy): a warning after a fallback."""
    if source is None:
        return
    if source.fallback_reason is None:
        out.line(f"{what} from the {source.name} (bucket {source.bucket})")
    else:
        out.warning(f"{what} from the {source.name} (bucket {source.bucket}): "
                    f"{source.fallback_reason}")


def notify_line(server: str, summary: dict[str, Any] | None) -> str | None:
    """``{server}: notifications to webhook https://host/… (signed), command /usr/bin/x …``."""
    if not summary:
        return None
    parts = []
    if summary.get("webhook"):
        parts.append(f"webhook {summary['webhook']}{' (signed)' if summary.get('signed') else ''}")
    if summary.get("command"):
        parts.append(f"command {summary['command']}")
    return f"{server}: notifications to {', '.join(parts)}" if parts else None


def seconds_text(seconds: float) -> str:
    """Recovery time as ``{N.N}s``."""
    return f"{seconds:.1f}s"


def rebuilt_note(server: str) -> str:
    return f"{server}: index.json was missing or unreadable; the server rebuilt it from the manifests."


def status_notes(out: Output, server: str, status: BackupStatus) -> None:
    """After Tako's status line: the last drill that passed and who is notified (stdout), the
    copy's state (stdout, or a warning when it lags), and warnings (stderr) for an overdue
    backup, a failed last drill or a rebuilt index."""
    ok = status.last_ok_drill
    if ok is not None:
        out.line(f"{server}: last verified restorable {format_local_time(ok.at_unix_secs)} "
                 f"({seconds_text(ok.seconds)} recovery)")
    told = notify_line(server, status.notify)
    if told is not None:
        out.line(told)
    copy_notes(out, server, status.copy)
    if status.overdue:
        last = status.last_backup
        limit = status.overdue_after_seconds
        hours = OVERDUE_HOURS if limit is None else f"{limit / 3_600:g}"
        if last is None:
            out.warning(f"{server}: backup overdue: no backups yet.")
        else:
            out.warning(f"{server}: backup overdue: the newest ({last.id}, "
                        f"{format_local_time(last.created_at_unix_secs)}) is more than {hours} "
                        "hours old.")
    drill = status.last_drill
    if drill is not None and not drill.ok:
        out.warning(f"{server}: the last restore drill ({drill.backup_id}, "
                    f"{format_local_time(drill.at_unix_secs)}) failed: {drill.message}")
    if status.index_rebuilt:
        out.warning(rebuilt_note(server))
    if status.kept_tree is not None:
        out.line(kept_tree_line(server, status.kept_tree))


def reply_notes(out: Output, server: str, notes: list[str]) -> None:
    """The notes a server's reply carried next to its data (stderr), each once."""
    for note in dict.fromkeys(notes):
        out.warning(f"{server}: {note}")


def list_note(out: Output, server: str, index_rebuilt: bool) -> None:
    """The note ``list`` prints when a server rebuilt its index to answer."""
    if index_rebuilt:
        out.warning(rebuilt_note(server))


def preview_lines(out: Output, preview: dict[str, Any], backup_id: str) -> None:
    """Print what restoring ``backup_id`` would change (``restore_preview``'s reply)."""
    counts = preview["counts"]
    added, removed, changed = (_files(counts[k]) for k in ("added", "removed", "changed"))
    out.line(f"Restoring {backup_id} would add {added}, remove {removed} and change {changed} "
             f"({counts['unchanged']} unchanged):")
    for mark, kind in (("+", "added"), ("-", "removed")):
        for change in preview[kind]:
            size = change["size_after"] if mark == "+" else change["size_before"]
            out.line(f"{mark} {change['path']} ({format_size(size)})")
    for change in preview["changed"]:
        out.line(f"~ {change['path']} ({format_size(change['size_before'])} -> "
                 f"{format_size(change['size_after'])})")
    listed = sum(len(preview[k]) for k in ("added", "removed", "changed"))
    total = counts["added"] + counts["removed"] + counts["changed"]
    if total > listed:
        out.line(f"... and {total - listed} more (see --json).")
    for table in preview["tables"]:
        if table["delta"] or None in (table["before"], table["after"]):
            out.line(table_line(table))
    out.line("Preview only: nothing was restored.")


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def table_line(table: dict[str, Any]) -> str:
    """``{file}: {table} {before} -> {after} rows ({delta:+d})``, or a new or dropped table."""
    where = f"{table['file']}: {table['table']}"
    if table["before"] is None:
        return f"{where} new table, {table['after']} rows"
    if table["after"] is None:
        return f"{where} table removed ({table['before']} rows)"
    return f"{where} {table['before']} -> {table['after']} rows ({table['delta']:+d})"


def restored_line(app: str, info: BackupInfo, what: str = "") -> str:
    """``Restored {app} from {id} ({size})`` and, for an undo, what was restored."""
    return f"Restored {app} from {info.id} ({format_size(info.size_bytes)}){what}"


def safety_line(safety: str) -> str:
    """Where the data a restore replaced went, when it was uploaded before the swap."""
    return f"Safety backup {safety} holds the data it replaced; `tako backups undo` restores it."


def restore_notes(out: Output, restored: Restored) -> None:
    """After the restored line: what happened to the replaced data, and the app's downtime."""
    safety = restored.safety
    if safety is not None and safety.status == "kept":
        hours = f"{safety.keep_hours:g} h" if safety.keep_hours is not None else "a while"
        out.line(f"The data it replaced is kept on the server ({hours}) and uploads as a pre-restore backup "
                 "in the background; `tako backups undo` swaps it back at once.")
    elif safety is not None and safety.status == "uploaded" and safety.backup_id is not None:
        out.line(safety_line(safety.backup_id))
        if safety.reason:
            out.line(f"It was uploaded before the swap, with the app stopped: {safety.reason}.")
    if restored.downtime_seconds is not None:
        out.line(f"App downtime: {restored.downtime_seconds:.2f}s.")


def kept_tree_line(server: str, kept: dict[str, Any]) -> str:
    """``backup_status``'s ``kept_tree``: where the data the last restore replaced stands."""
    upload, until = kept["upload"], format_local_time(kept["drop_at_unix_secs"])
    if upload == "verified":
        state = f"in the bucket as {kept.get('backup_id')}"
    elif upload == "failed":
        state = f"its upload failed ({kept.get('message')}); tako-server retries it"
    else:
        progress = kept.get("progress")
        done = ""
        if isinstance(progress, dict) and progress.get("bytes_total"):
            done = f", {100 * progress['bytes_done'] // max(1, progress['bytes_total'])}%"
        state = f"uploading as a pre-restore backup{done}"
    return (f"{server}: the data the last restore replaced is kept until {until} at least ({state}); "
            "`tako backups undo` swaps it back.")
