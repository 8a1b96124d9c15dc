"""``tako backups sync``: bring the second copy of an env's backups up to date (our tako-server
only; Tako's answers "Unknown command")."""

from __future__ import annotations

import typer

from .backups_common import ENV_OPTION, SERVER_OPTION, heading, target_summary
from .context import get_globals


def sync(
    ctx: typer.Context,
    env: str | None = ENV_OPTION,
    server: str | None = SERVER_OPTION,
) -> None:
    """Bring a lagging backup copy up to date: copy every backup it lacks from the primary."""
    from ..errors import IntegrityError
    from ..remote import protocol
    from .replies import parse_sync
    from .targets import call_servers, raise_failures, resolve_target

    opts = get_globals(ctx)
    target = resolve_target(opts, env, server)
    heading(opts, target.title)
    if opts.dry_run:
        opts.out.dry_run_done("backups sync", target_summary(target),
                              [f"copy the backups the copy lacks on {s.name}" for s in target.servers],
                              nothing="contacted")
        return
    outcomes = call_servers(target.servers, protocol.SYNC_COPIES, {"app": target.app_id}, parse_sync,
                            out=opts.out, spinner="Syncing the backup copy")
    incomplete = 0
    for o in outcomes:
        if o.error is not None:
            continue
        done = o.data
        copied = len(done["copied"])
        opts.out.line(f"{o.name}: copied {copied} backup{'' if copied == 1 else 's'} to bucket "
                      f"{done['bucket']} ({done['already']} already there)")
        for failed in done["failed"]:
            opts.out.warning(f"{o.name}: {failed['backup_id']} was not copied: {failed['error']}")
        incomplete += bool(done["failed"])
    raise_failures(outcomes, "Failed to sync the copy on {failed} of {total} servers.")
    if incomplete:
        raise IntegrityError(f"Some backups could not be copied on {incomplete} of {len(outcomes)} servers.")
    opts.out.result("backups sync", {**target_summary(target), "results": [
        {"server": o.name, **o.data} for o in outcomes]})
