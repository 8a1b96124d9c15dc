"""``tako backups sync`` and ``tako backups notify test``: our commands for the second copy of the
backups and for notifications (our tako-server only; Tako's answers "Unknown command")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from .backups_common import ENV_OPTION, SERVER_OPTION, heading, target_summary
from .context import get_globals

if TYPE_CHECKING:
    from ..policy import NotifySettings
    from .targets import Target

notify_app = typer.Typer(name="notify", rich_markup_mode=None, no_args_is_help=True, add_completion=False,
                         help="Notifications about failed, overdue or lagging backups.")


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


@notify_app.command("test")
def notify_test(
    ctx: typer.Context,
    env: str | None = ENV_OPTION,
    server: str | None = SERVER_OPTION,
) -> None:
    """Send a test notification from each server to the env's webhook and/or command."""
    from ..errors import RemoteError
    from ..remote import protocol
    from .replies import parse_notify_test
    from .targets import call_servers, raise_failures, resolve_target

    opts = get_globals(ctx)
    target = resolve_target(opts, env, server)
    settings = local_notify_settings(target)
    heading(opts, target.title)
    if opts.dry_run:
        opts.out.dry_run_done("backups notify test", target_summary(target),
                              [f"send a test notification from {s.name}" for s in target.servers],
                              nothing="contacted")
        return
    payload: dict[str, Any] = {"app": target.app_id}
    if settings is not None:
        payload["notify"] = settings.to_dict()
    outcomes = call_servers(target.servers, protocol.NOTIFY_TEST, payload, parse_notify_test,
                            out=opts.out, spinner="Sending a test notification")
    failed = 0
    for o in outcomes:
        if o.error is not None:
            continue
        for shown, outcome in o.data["results"].items():
            if outcome == "delivered":
                opts.out.line(f"{o.name}: {shown}: delivered")
            else:
                failed += 1
                opts.out.warning(f"{o.name}: {shown}: {outcome}")
    raise_failures(outcomes, "Failed to send a test notification from {failed} of {total} servers.")
    if failed:
        raise RemoteError(f"{failed} test notification{'' if failed == 1 else 's'} could not be delivered.")
    opts.out.result("backups notify test", {**target_summary(target), "results": [
        {"server": o.name, "results": o.data["results"]} for o in outcomes]})


def local_notify_settings(target: Target) -> NotifySettings | None:
    """The env's notify settings from the project's settings file, to test them before a deploy;
    None sends none, and the servers test the settings they were deployed with."""
    return None
