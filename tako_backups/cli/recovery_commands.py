"""``tako backups drill | undo | reindex`` and ``restore --preview``: our commands that prove a
backup restores, show what a restore would change, take one back, and repair the index.

These talk to our tako-server only (Tako's server does not know the commands; it answers with
an "Unknown command" error, shown as that server's failure).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from .backups_common import (
    ENV_OPTION,
    KEEP_PREVIOUS_OPTION,
    SERVER_OPTION,
    check_id,
    confirm_replace,
    heading,
    safety_fields,
    target_summary,
)
from .context import Globals, get_globals

if TYPE_CHECKING:
    from ..project.servers import ServerEntry
    from .targets import Target


def drill(
    ctx: typer.Context,
    backup_id: str | None = typer.Argument(None, help="Backup id (default: the newest on each server)."),
    env: str | None = ENV_OPTION,
    server: str | None = SERVER_OPTION,
) -> None:
    """Prove a backup restores: the server restores it into a scratch folder and checks it."""
    from ..errors import IntegrityError
    from ..remote import protocol
    from .render import seconds_text
    from .replies import parse_drill
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
        opts.out.dry_run_done("backups drill", target_summary(target),
                              [f"drill {backup_id or 'the newest backup'} on {s.name}" for s in servers],
                              nothing="contacted")
        return
    payload: dict[str, Any] = {"app": target.app_id, "backup_id": backup_id}
    outcomes = call_servers(servers, protocol.DRILL_BACKUP, payload, parse_drill, out=opts.out,
                            spinner="Running restore drill")
    for o in outcomes:
        if o.error is None and o.data.ok:
            read = "" if o.data.source is None else f", read from the {o.data.source}"
            opts.out.line(f"{o.name}: {o.data.backup_id} restorable ({seconds_text(o.data.seconds)} "
                          f"recovery{read})")
            if o.data.message:
                opts.out.warning(f"{o.name}: {o.data.backup_id} restores from the {o.data.source} only: "
                                 f"{o.data.message}")
        elif o.error is None:
            opts.out.line(f"{o.name}: {o.data.backup_id} failed the drill: {o.data.message}")
    raise_failures(outcomes, "Failed to drill on {failed} of {total} servers.")
    failed = [o for o in outcomes if not o.data.ok]
    if failed:
        raise IntegrityError(f"The restore drill failed on {len(failed)} of {len(outcomes)} servers.")
    opts.out.result("backups drill", {**target_summary(target), "results": [
        {"server": o.name, "drill": o.data.to_dict()} for o in outcomes]})


def run_preview(opts: Globals, target: Target, entry: ServerEntry, backup_id: str) -> None:
    """``tako backups restore <id> --preview``: what restoring would change on ``entry``."""
    from ..remote import protocol
    from .render import preview_lines
    from .replies import parse_preview
    from .targets import call_servers, raise_failures

    heading(opts, f"{target.title} on {entry.name}")
    summary = {**target_summary(target), "server": entry.name}
    if opts.dry_run:
        opts.out.dry_run_done("backups restore", {**summary, "dry_run": True, "preview": True,
                                                  "backup_id": backup_id},
                              [f"preview restoring {backup_id} on {entry.name}"], nothing="contacted")
        return
    outcomes = call_servers([entry], protocol.RESTORE_PREVIEW, {"app": target.app_id, "backup_id": backup_id},
                            parse_preview, out=opts.out, spinner="Staging the backup to compare")
    raise_failures(outcomes, f"Failed to preview restoring {backup_id}.")
    data = outcomes[0].data
    preview_lines(opts.out, data, backup_id)
    opts.out.result("backups restore", {**summary, "preview": {k: v for k, v in data.items() if k != "app"}})


def undo(
    ctx: typer.Context,
    env: str | None = ENV_OPTION,
    server: str | None = typer.Option(None, "--server", help="The server to undo the last restore on."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Do not ask for confirmation."),
    no_safety_backup: bool = typer.Option(False, "--no-safety-backup",
                                          help="Do not keep or upload the current data."),
    keep_previous: float | None = KEEP_PREVIOUS_OPTION,
) -> None:
    """Undo the last restore: swap back the data it replaced (instant while the server still keeps
    it), or restore the newest pre-restore backup."""
    from ..remote import protocol
    from .output import format_local_time
    from .render import restore_notes, restored_line
    from .replies import parse_undone
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
    summary = {**target_summary(target), "server": entry.name}
    if opts.dry_run:
        opts.out.dry_run_done("backups undo", summary, [
            f"swap back the data the last restore of {target.app} ({target.env}) replaced on {entry.name} "
            "(or restore its newest pre-restore backup)"],
            nothing="restored or contacted")
        return
    payload: dict[str, Any] = {"app": target.app_id, **safety_fields(no_safety_backup, keep_previous)}
    outcomes = call_servers([entry], protocol.UNDO_RESTORE, payload, parse_undone, out=opts.out,
                            spinner="Undoing the last restore", whole_reply=True, watch=target.app_id)
    raise_failures(outcomes, "Failed to undo the last restore.")
    undone = outcomes[0].data
    if undone.backup is None:
        kept_at = format_local_time(undone.kept_at_unix_secs or 0)
        opts.out.line(f"Swapped back the data the last restore of {target.app} replaced (kept at {kept_at})")
    else:
        opts.out.line(restored_line(target.app, undone.backup, ", the data the last restore replaced"))
    restore_notes(opts.out, undone)
    opts.out.result("backups undo", {**summary, "source": "bucket" if undone.backup else "kept",
                                     "backup": None if undone.backup is None else undone.backup.to_dict(),
                                     **undone.to_dict()})


def reindex(
    ctx: typer.Context,
    env: str | None = ENV_OPTION,
    server: str | None = SERVER_OPTION,
) -> None:
    """Rebuild each server's index.json from the manifests on the bucket."""
    from ..remote import protocol
    from .render import REINDEX_WAS
    from .replies import parse_reindex
    from .targets import call_servers, raise_failures, resolve_target

    opts = get_globals(ctx)
    target = resolve_target(opts, env, server)
    heading(opts, target.title)
    if opts.dry_run:
        opts.out.dry_run_done("backups reindex", target_summary(target), [
            f"rebuild the index of {target.app} ({target.env}) on {entry.name}" for entry in target.servers])
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
