"""Beyond Tako in the CLI: ``tako backups drill | undo | reindex``, ``restore --preview`` and the
notes ``list``/``status`` print about drills, overdue backups and rebuilt indexes.

These talk to our tako-server only (Tako's server does not know the commands; it answers with
an "Unknown command" error, shown as that server's failure).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from .backups_common import (
    ENV_OPTION,
    SERVER_OPTION,
    check_id,
    confirm_replace,
    heading,
    target_summary,
)
from .context import Globals, get_globals

if TYPE_CHECKING:
    from ..core.drill import DrillResult
    from .replies import BackupStatus
    from .targets import Outcome, Target

OVERDUE_HOURS = 26
REINDEX_WAS = {"ok": "the old one was readable", "missing": "it was missing",
               "unreadable": "it was unreadable"}


def seconds_text(seconds: float) -> str:
    """Recovery time as ``{N.N}s``."""
    return f"{seconds:.1f}s"


# ----- notes for list and status -----

def rebuilt_note(server: str) -> str:
    return f"{server}: index.json was missing or unreadable; the server rebuilt it from the manifests."


def status_notes(opts: Globals, server: str, status: BackupStatus) -> None:
    """After Tako's status line: the last drill that passed (stdout), and warnings (stderr) for an
    overdue backup, a failed last drill or a rebuilt index."""
    from .output import format_local_time

    ok = status.last_ok_drill
    if ok is not None:
        opts.out.line(f"{server}: last verified restorable {format_local_time(ok.at_unix_secs)} "
                   f"({seconds_text(ok.seconds)} recovery)")
    if status.overdue:
        last = status.last_backup
        if last is None:
            opts.out.warning(f"{server}: backup overdue: no backups yet.")
        else:
            opts.out.warning(f"{server}: backup overdue: the newest ({last.id}, "
                          f"{format_local_time(last.created_at_unix_secs)}) is more than {OVERDUE_HOURS} "
                          "hours old.")
    drill = status.last_drill
    if drill is not None and not drill.ok:
        opts.out.warning(f"{server}: the last restore drill ({drill.backup_id}, "
                      f"{format_local_time(drill.at_unix_secs)}) failed: {drill.message}")
    if status.index_rebuilt:
        opts.out.warning(rebuilt_note(server))


# ----- drill -----

def parse_drill(data: Any) -> DrillResult:
    from ..core.drill import DrillResult

    return DrillResult.from_dict(data)


def drill(
    ctx: typer.Context,
    backup_id: str | None = typer.Argument(None, help="Backup id (default: the newest on each server)."),
    env: str | None = ENV_OPTION,
    server: str | None = SERVER_OPTION,
) -> None:
    """Prove a backup restores: the server restores it into a scratch folder and checks it."""
    from ..errors import IntegrityError
    from ..remote import protocol
    from .targets import call_servers, raise_failures, require_single, resolve_target

    opts = get_globals(ctx)
    target = resolve_target(opts, env, server)
    servers = target.servers
    if backup_id is not None:
        check_id(backup_id)
        servers = [require_single(target, "Pass --server to choose whose backup to drill "
                                          "(ids are per server).")]
    heading(opts, target.title)
    if opts.dry_run:
        for entry in servers:
            opts.out.would(f"drill {backup_id or 'the newest backup'} on {entry.name}")
        opts.out.line("Dry run: nothing was contacted.")
        opts.out.result("backups drill", {**target_summary(target), "dry_run": True})
        return
    payload: dict[str, Any] = {"app": target.app_id, "backup_id": backup_id}
    outcomes = call_servers(servers, protocol.DRILL_BACKUP, payload, parse_drill, out=opts.out,
                            spinner="Running restore drill")
    for o in outcomes:
        if o.error is None and o.data.ok:
            opts.out.line(f"{o.name}: {o.data.backup_id} restorable ({seconds_text(o.data.seconds)} recovery)")
        elif o.error is None:
            opts.out.line(f"{o.name}: {o.data.backup_id} failed the drill: {o.data.message}")
    raise_failures(outcomes, "Failed to drill on {failed} of {total} servers.")
    failed = [o for o in outcomes if not o.data.ok]
    if failed:
        raise IntegrityError(f"The restore drill failed on {len(failed)} of {len(outcomes)} servers.")
    opts.out.result("backups drill", {**target_summary(target), "results": [
        {"server": o.name, "drill": o.data.to_dict()} for o in outcomes]})


# ----- restore --preview -----

def preview(opts: Globals, outcome_data: dict[str, Any], backup_id: str) -> None:
    """Print what restoring ``backup_id`` would change (``restore_preview``'s reply)."""
    from .output import format_size

    counts = outcome_data["counts"]
    added, removed, changed = (_files(counts[k]) for k in ("added", "removed", "changed"))
    opts.out.line(f"Restoring {backup_id} would add {added}, remove {removed} and change {changed} "
               f"({counts['unchanged']} unchanged):")
    for mark, kind in (("+", "added"), ("-", "removed")):
        for change in outcome_data[kind]:
            size = change["size_after"] if mark == "+" else change["size_before"]
            opts.out.line(f"{mark} {change['path']} ({format_size(size)})")
    for change in outcome_data["changed"]:
        opts.out.line(f"~ {change['path']} ({format_size(change['size_before'])} -> "
                   f"{format_size(change['size_after'])})")
    listed = sum(len(outcome_data[k]) for k in ("added", "removed", "changed"))
    total = counts["added"] + counts["removed"] + counts["changed"]
    if total > listed:
        opts.out.line(f"... and {total - listed} more (see --json).")
    for table in outcome_data["tables"]:
        if table["delta"] or None in (table["before"], table["after"]):
            opts.out.line(table_line(table))
    opts.out.line("Preview only: nothing was restored.")


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


def parse_preview(data: Any) -> dict[str, Any]:
    from ..errors import FormatError
    from ..models import BackupInfo

    if not isinstance(data, dict) or not all(k in data for k in ("added", "removed", "changed", "counts",
                                                                  "tables", "backup")):
        raise FormatError("The restore preview must be an object with added, removed, changed, counts, "
                          "tables and backup.")
    BackupInfo.from_dict(data["backup"])
    return data


def run_preview(opts: Globals, target: Target, entry: Any, backup_id: str) -> None:
    """``tako backups restore <id> --preview``."""
    from ..remote import protocol
    from .targets import call_servers, raise_failures

    heading(opts, f"{target.title} on {entry.name}")
    if opts.dry_run:
        opts.out.would(f"preview restoring {backup_id} on {entry.name}")
        opts.out.line("Dry run: nothing was contacted.")
        opts.out.result("backups restore", {**target_summary(target), "server": entry.name, "dry_run": True,
                                         "preview": True, "backup_id": backup_id})
        return
    outcomes = call_servers([entry], protocol.RESTORE_PREVIEW, {"app": target.app_id, "backup_id": backup_id},
                            parse_preview, out=opts.out, spinner="Staging the backup to compare")
    raise_failures(outcomes, "")
    data = outcomes[0].data
    preview(opts, data, backup_id)
    opts.out.result("backups restore", {**target_summary(target), "server": entry.name, "preview": {
        k: v for k, v in data.items() if k != "app"}})


# ----- restore replies, undo -----

def parse_restored(reply: Any) -> tuple[Any, str | None]:
    """A whole restore reply -> (BackupInfo, safety backup id or None)."""
    from ..errors import FormatError
    from ..models import BackupInfo

    safety = reply.get("safety_backup_id") if isinstance(reply, dict) else None
    if safety is not None and not isinstance(safety, str):
        raise FormatError("The restore reply field 'safety_backup_id' must be a string.")
    return BackupInfo.from_dict(reply["data"]), safety


def safety_line(safety: str | None) -> str | None:
    if safety is None:
        return None
    return f"Safety backup {safety} holds the data it replaced; `tako backups undo` restores it."


def undo(
    ctx: typer.Context,
    env: str | None = ENV_OPTION,
    server: str | None = typer.Option(None, "--server", help="The server to undo the last restore on."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Do not ask for confirmation."),
    no_safety_backup: bool = typer.Option(False, "--no-safety-backup",
                                          help="Do not back up the current data first."),
) -> None:
    """Undo the last restore: restore the safety backup it took of the data it replaced."""
    from ..remote import protocol
    from .output import format_size
    from .targets import call_servers, raise_failures, require_single, resolve_target

    opts = get_globals(ctx)
    target = resolve_target(opts, env, server)
    entry = require_single(target, "Pass --server to choose where to undo the last restore.")
    if not opts.dry_run and not yes:
        confirm_replace(f"Undo the last restore of {target.app} in {target.env} on {entry.name}?",
                        f"Undoing the last restore of {target.app} ({target.env}) on {entry.name} replaces "
                        "its live data; pass --yes to confirm (there is no terminal to ask on).",
                        "Undo cancelled.")
    heading(opts, f"{target.title} on {entry.name}")
    if opts.dry_run:
        opts.out.would(f"restore the newest pre-restore backup of {target.app} ({target.env}) on {entry.name}")
        opts.out.line("Dry run: nothing was restored or contacted.")
        opts.out.result("backups undo", {**target_summary(target), "server": entry.name, "dry_run": True})
        return
    payload: dict[str, Any] = {"app": target.app_id}
    if no_safety_backup:
        payload["safety_backup"] = False
    outcomes = call_servers([entry], protocol.UNDO_RESTORE, payload, parse_restored, out=opts.out,
                            spinner="Undoing the last restore", whole_reply=True)
    raise_failures(outcomes, "")
    info, safety = outcomes[0].data
    opts.out.line(f"Restored {target.app} from {info.id} ({format_size(info.size_bytes)}), the data the last "
               "restore replaced")
    if safety_line(safety):
        opts.out.line(str(safety_line(safety)))
    opts.out.result("backups undo", {**target_summary(target), "server": entry.name, "backup": info.to_dict(),
                                  "safety_backup_id": safety})


# ----- reindex -----

def parse_reindex(data: Any) -> dict[str, Any]:
    from ..errors import FormatError

    if not isinstance(data, dict) or not isinstance(data.get("backups"), list) \
            or data.get("previous") not in REINDEX_WAS:
        raise FormatError("The reindex reply must have a 'backups' list and 'previous'.")
    return data


def reindex(
    ctx: typer.Context,
    env: str | None = ENV_OPTION,
    server: str | None = SERVER_OPTION,
) -> None:
    """Rebuild each server's index.json from the manifests on the bucket."""
    from ..remote import protocol
    from .targets import call_servers, raise_failures, resolve_target

    opts = get_globals(ctx)
    target = resolve_target(opts, env, server)
    heading(opts, target.title)
    if opts.dry_run:
        for entry in target.servers:
            opts.out.would(f"rebuild the index of {target.app} ({target.env}) on {entry.name}")
        opts.out.line("Dry run: nothing was written or contacted.")
        opts.out.result("backups reindex", {**target_summary(target), "dry_run": True})
        return
    outcomes = call_servers(target.servers, protocol.REINDEX, {"app": target.app_id}, parse_reindex,
                            out=opts.out, spinner="Rebuilding the index")
    for o in outcomes:
        if o.error is None:
            count = len(o.data["backups"])
            opts.out.line(f"{o.name}: rebuilt index.json from {count} backup{'s' if count != 1 else ''} "
                       f"({REINDEX_WAS[o.data['previous']]})")
    raise_failures(outcomes, "Failed to rebuild the index on {failed} of {total} servers.")
    opts.out.result("backups reindex", {**target_summary(target), "results": [
        {"server": o.name, "backups": len(o.data["backups"]), "previous": o.data["previous"]}
        for o in outcomes]})


def list_note(opts: Globals, outcome: Outcome) -> None:
    """The note ``list`` prints when a server rebuilt its index to answer."""
    if getattr(outcome.data, "index_rebuilt", False):
        opts.out.warning(rebuilt_note(outcome.name))
