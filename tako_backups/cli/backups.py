"""``tako backups now | list (ls) | status | download <id> | restore <id>``.

Our extensions (see :mod:`.recovery_commands`, :mod:`.key_commands`, :mod:`.notify_commands`,
:mod:`.copy_commands` and :mod:`.offline`): ``drill``, ``undo``, ``reindex``, ``restore --preview`` /
``--no-safety-backup``, ``keys rotate | reencrypt | retire``, ``notify secret | test``, ``sync``,
``list --why``, ``verify``, ``extract`` (``--path``), ``files`` and ``restore --path``.

Every command prints a "Backups" heading and ``{app} ({env})``, then asks the env's servers (all of
them at once, or only ``--server``). ``now`` sends the env's decrypted backup settings inside the
signed call; the others send only the app id. ``now`` fails when any server fails, ``list`` and
``status`` only when every server fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from .backups_common import (
    ENV_OPTION,
    ID_HELP,
    KEEP_PREVIOUS_OPTION,
    SERVER_OPTION,
    ask_every_server,
    check_id,
    confirm_replace,
    failures,
    heading,
    safety_fields,
    target_summary,
)
from .context import get_globals

if TYPE_CHECKING:
    from ..core.partial import PathSelection
    from .targets import Target

backups_app = typer.Typer(name="backups", rich_markup_mode=None, no_args_is_help=True, add_completion=False,
                          help="Create, list, download and restore backups.")


@backups_app.command("now")
def now(
    ctx: typer.Context,
    env: str | None = ENV_OPTION,
    server: str | None = SERVER_OPTION,
) -> None:
    """Create a backup immediately."""
    from ..errors import ConfigError
    from ..project.backup_keys import backups_enabled, ensure_backup_keys, needs_backup_key
    from ..project.backup_wire import backup_settings_to_send
    from ..project.secrets import load_secrets
    from ..remote import protocol
    from .prompts import key_prompts
    from .render import copy_report, created_line
    from .replies import parse_created
    from .targets import call_servers, raise_failures, resolve_target

    opts = get_globals(ctx)
    target = resolve_target(opts, env, server)
    project, name = target.project, target.env
    if not backups_enabled(project, name):
        raise ConfigError(f"Backups are not enabled for environment '{name}'. Add "
                          f'`backup = {{ storage = "<resource>" }}` under [envs.{name}] in tako.toml.')
    secrets = load_secrets(project.secrets_path)
    heading(opts, target.title)
    names = [s.name for s in target.servers]
    if opts.dry_run:
        creates_key = needs_backup_key(project, secrets, name)
        steps = [f"create a backup key for {name} in {project.secrets_path}"] if creates_key else []
        opts.out.dry_run_done("backups now", {**target_summary(target), "dry_run": True, "servers": names,
                                              "backup_key_would_be_created": creates_key},
                              steps + [f"create a backup on {entry}" for entry in names])
        return
    prompts = key_prompts()
    if ensure_backup_keys(project, secrets, name, prompts):
        opts.out.hint(f"Created backup key {secrets.envs[name].backup_keys[-1].id} for {name}.")
    binding = backup_settings_to_send(project, secrets, name, prompts)
    assert binding is not None
    spinner = "Creating backup" if len(names) == 1 else f"Creating backups on {len(names)} servers"
    outcomes = call_servers(target.servers, protocol.BACKUP_NOW,
                            {"app": target.app_id, "backup": binding.to_dict()}, parse_created,
                            out=opts.out, spinner=spinner, whole_reply=True, watch=target.app_id)
    for outcome in outcomes:
        if outcome.error is None:
            opts.out.line(created_line(outcome.name, outcome.data[0]))
            copy_report(opts.out, outcome.name, outcome.data[1])
    raise_failures(outcomes, "Failed to back up {failed} of {total} servers.")
    opts.out.result("backups now", {**target_summary(target), "results": [
        {"server": o.name, "backup": o.data[0].to_dict(),
         **({} if o.data[1] is None else {"copy": o.data[1].to_dict()})} for o in outcomes]})


def list_backups(
    ctx: typer.Context,
    env: str | None = ENV_OPTION,
    server: str | None = SERVER_OPTION,
    why: bool = typer.Option(False, "--why", help="Say why retention keeps each backup (our server)."),
) -> None:
    """List backups, newest first."""
    from ..remote import protocol
    from .render import copy_notes, list_note, listed_line
    from .replies import parse_list
    from .targets import failure_text, resolve_target

    opts = get_globals(ctx)
    target = resolve_target(opts, env, server)
    outcomes = ask_every_server(opts, target, protocol.LIST_BACKUPS, parse_list,
                                "Failed to query backups from all target servers.",
                                {"why": True} if why else None)
    for outcome in outcomes:
        if outcome.error is not None:
            opts.out.warning(failure_text(outcome))
            continue
        found = outcome.data
        if len(outcomes) > 1:
            opts.out.line(outcome.name)
        if not found:
            opts.out.line("No backups found.")
        for info in found:
            opts.out.line(listed_line(info, found.copy_state, found.why if why else None))
        list_note(opts.out, outcome.name, found.index_rebuilt)
        copy_notes(opts.out, outcome.name, found.copy_state)
        if why and found and found.why is None:
            opts.out.warning(f"{outcome.name}: this server does not say why it keeps backups (Tako's "
                             "server keeps them for retention_days).")
    opts.out.result("backups list", {
        **target_summary(target),
        "results": [{"server": o.name, "backups": [b.to_dict() for b in o.data],
                     **({"index_rebuilt": True} if o.data.index_rebuilt else {}),
                     **({} if o.data.copy_state is None else {"copy": o.data.copy_state.to_dict()}),
                     **({"why": o.data.why} if why and o.data.why is not None else {})}
                    for o in outcomes if o.error is None],
        "errors": failures(outcomes),
    })


backups_app.command("list")(list_backups)
backups_app.command("ls", hidden=True)(list_backups)


@backups_app.command("status")
def status(
    ctx: typer.Context,
    env: str | None = ENV_OPTION,
    server: str | None = SERVER_OPTION,
) -> None:
    """Show whether backups are enabled, the last one and the next one."""
    from ..remote import protocol
    from .render import status_line, status_notes
    from .replies import parse_status
    from .targets import failure_text, resolve_target

    opts = get_globals(ctx)
    target = resolve_target(opts, env, server)
    outcomes = ask_every_server(opts, target, protocol.BACKUP_STATUS, parse_status,
                                "Failed to query backup status from all target servers.")
    for outcome in outcomes:
        if outcome.error is not None:
            opts.out.warning(failure_text(outcome))
        else:
            opts.out.line(status_line(outcome.name, outcome.data))
            status_notes(opts.out, outcome.name, outcome.data)
    opts.out.result("backups status", {
        **target_summary(target),
        "results": [{"server": o.name, "status": o.data.to_dict()} for o in outcomes if o.error is None],
        "errors": failures(outcomes),
    })


@backups_app.command("download")
def download(
    ctx: typer.Context,
    backup_id: str = typer.Argument(..., help=ID_HELP),
    env: str | None = ENV_OPTION,
    server: str | None = typer.Option(None, "--server", help="The server to download from."),
    output: Path | None = typer.Option(None, "--output", metavar="PATH",
                                       help="Archive path (default ./<id>.tar.zst.enc); the manifest, "
                                            "needed to decrypt it, is saved as <PATH>.json."),
) -> None:
    """Download a backup archive (still encrypted) and its manifest."""
    from ..errors import IntegrityError, RemoteError, StorageError
    from ..remote import protocol
    from .download import check_free, manifest_path_for, save_backup
    from .output import format_size
    from .render import source_note
    from .replies import parse_download
    from .targets import call_servers, download_transport, raise_failures, require_single, resolve_target

    opts = get_globals(ctx)
    target = resolve_target(opts, env, server)
    entry = require_single(target, "Pass --server to choose a backup source.")
    check_id(backup_id)
    path = output.expanduser() if output is not None else Path(f"{backup_id}.tar.zst.enc")
    manifest = manifest_path_for(path)
    check_free(path)
    heading(opts, f"{target.title} from {entry.name}")
    result = {**target_summary(target), "server": entry.name, "path": str(path),
              "manifest_path": str(manifest)}
    if opts.dry_run:
        opts.out.dry_run_done("backups download", result,
                              [f"download {backup_id} from {entry.name} to {path} (manifest {manifest})"])
        return
    payload: dict[str, object] = {"app": target.app_id, "backup_id": backup_id}
    outcomes = call_servers([entry], protocol.BACKUP_DOWNLOAD_URL, payload, parse_download, out=opts.out)
    raise_failures(outcomes, f"Failed to get a download link for {backup_id}.")
    link = outcomes[0].data
    for attempt in (1, 2):
        if link.backup.id != backup_id:
            raise RemoteError(f"Server '{entry.name}' sent the manifest of {link.backup.id} when asked "
                              f"for {backup_id}.")
        try:
            save_backup(link.url, link.backup, path, opts.out, transport=download_transport())
            break
        except (IntegrityError, StorageError) as exc:
            if attempt == 2 or link.source is None or link.source.name != "primary":
                raise
            opts.out.warning(f"The download from the primary (bucket {link.source.bucket}) failed: {exc} "
                             "Trying the copy.")
            outcomes = call_servers([entry], protocol.BACKUP_DOWNLOAD_URL, {**payload, "source": "copy"},
                                    parse_download, out=opts.out)
            raise_failures(outcomes, f"Failed to get a download link for {backup_id} from the copy.")
            link = outcomes[0].data
    source_note(opts.out, "Downloaded", link.source)
    opts.out.line(f"Saved {path} ({format_size(link.backup.size_bytes)})")
    opts.out.result("backups download", {**result, "backup": link.backup.to_dict(),
                                         **({} if link.source is None else link.source.to_dict())})


@backups_app.command("restore")
def restore(
    ctx: typer.Context,
    backup_id: str = typer.Argument(..., help=ID_HELP),
    env: str | None = ENV_OPTION,
    server: str | None = typer.Option(None, "--server", help="The server to restore on."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Do not ask for confirmation."),
    preview: bool = typer.Option(False, "--preview",
                                 help="Only show what would change (files, SQLite row counts)."),
    no_safety_backup: bool = typer.Option(False, "--no-safety-backup",
                                          help="Do not keep or upload the current data (undo needs it)."),
    keep_previous: float | None = KEEP_PREVIOUS_OPTION,
    paths: list[str] | None = typer.Option(
        None, "--path", metavar="PATH",
        help="Restore only this file or folder inside the archive, e.g. app/uploads/2026/11/x.png "
             "(repeatable; our server)."),
) -> None:
    """Restore app data from a backup: stops the app, replaces its data, starts it again.

    The server keeps the data it replaces on disk and uploads it as a pre-restore backup in the
    background (`tako backups undo` swaps it back). With --path only those paths are replaced;
    the safety copy and undo are the same (the whole previous data is kept)."""
    from ..core.partial import PathSelection
    from ..errors import ConfigError
    from ..remote import protocol
    from .recovery_commands import run_preview
    from .render import restore_notes, restored_line, source_note
    from .replies import parse_restored, parse_source
    from .targets import call_servers, raise_failures, require_single, resolve_target

    opts = get_globals(ctx)
    target = resolve_target(opts, env, server)
    entry = require_single(target, "Pass --server to choose where to restore.")
    check_id(backup_id)
    selection = PathSelection.parse(paths) if paths else None
    if preview and selection is not None:
        raise ConfigError("--preview compares the whole backup; drop --path to preview, or --preview to "
                          "restore the paths.")
    if preview:
        run_preview(opts, target, entry, backup_id)
        return
    if not opts.dry_run and not yes:
        _confirm_restore(target, entry.name, backup_id, selection)
    heading(opts, f"{target.title} on {entry.name}")
    summary = {**target_summary(target), "server": entry.name}
    if opts.dry_run:
        opts.out.dry_run_done("backups restore", {**summary, "dry_run": True, "backup_id": backup_id},
                              [f"restore {target.app} ({target.env}) on {entry.name} from {backup_id}"],
                              nothing="restored or contacted")
        return
    payload: dict[str, object] = {"app": target.app_id, "backup_id": backup_id,
                                  **safety_fields(no_safety_backup, keep_previous)}
    command = protocol.RESTORE_BACKUP
    if selection is not None:
        command, payload["paths"] = protocol.RESTORE_PATHS, list(selection.paths)
    outcomes = call_servers([entry], command, payload,
                            lambda reply: (parse_restored(reply), parse_source(reply)), out=opts.out,
                            spinner="Restoring backup", whole_reply=True, watch=target.app_id)
    raise_failures(outcomes, f"Failed to restore {backup_id}.")
    restored, source = outcomes[0].data
    assert restored.backup is not None
    source_note(opts.out, "Read the backup", source)
    opts.out.line(restored_line(target.app, restored.backup))
    if selection is not None:
        opts.out.line(f"Restored only {', '.join(selection.paths)}; the rest of the data is as it was.")
    restore_notes(opts.out, restored)
    opts.out.result("backups restore", {**summary, "backup": restored.backup.to_dict(), **restored.to_dict(),
                                        **({} if selection is None else {"paths": list(selection.paths)}),
                                        **({} if source is None else source.to_dict())})


def _confirm_restore(target: Target, server: str, backup_id: str, selection: PathSelection | None) -> None:
    """Ask on a terminal. Raises ConfigError without one, Interrupted when declined."""
    what = "" if selection is None else f" {', '.join(selection.paths)} of"
    confirm_replace(f"Restore{what} {target.app} in {target.env} on {server} from {backup_id}?",
                    f"Restoring{what} {target.app} ({target.env}) on {server} replaces its live data; "
                    "pass --yes to confirm (there is no terminal to ask on).", "Restore cancelled.")


def _register_offline() -> None:
    from .offline import extract, files, verify

    backups_app.command("verify")(verify)
    backups_app.command("extract")(extract)
    backups_app.command("files")(files)


def _register_extensions() -> None:
    from .copy_commands import sync
    from .key_commands import keys_app
    from .notify_commands import notify_app
    from .recovery_commands import drill, reindex, undo

    backups_app.command("drill")(drill)
    backups_app.command("undo")(undo)
    backups_app.command("reindex")(reindex)
    backups_app.command("sync")(sync)
    backups_app.add_typer(keys_app)
    backups_app.add_typer(notify_app)


_register_offline()
_register_extensions()
