"""What the ``tako backups`` command modules (:mod:`.backups`, :mod:`.recovery_commands`,
:mod:`.key_commands`) share: the ``--env`` and ``--server`` options, the "Backups" heading, the
JSON summary, the backup id check, asking every server at once and the confirmation before live
data is replaced."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from .context import Globals
    from .targets import Outcome, Target

ENV_HELP = "Environment (default: production)."
SERVER_HELP = "Only this server (one of the environment's servers)."
ID_HELP = "Backup id from `tako backups list`."
ENV_OPTION: Any = typer.Option(None, "--env", help=ENV_HELP)
SERVER_OPTION: Any = typer.Option(None, "--server", help=SERVER_HELP)
MAX_KEEP_HOURS = 720
KEEP_PREVIOUS_OPTION: Any = typer.Option(
    None, "--keep-previous", metavar="HOURS", min=0, max=MAX_KEEP_HOURS,
    help="Hours the server keeps the replaced data on disk for an instant undo, once it is safely in "
         "the bucket (default 24).")


def safety_fields(no_safety_backup: bool, keep_previous: float | None) -> dict[str, object]:
    """The optional ``safety_backup`` and ``keep_previous_hours`` fields of a restore or undo."""
    fields: dict[str, object] = {}
    if no_safety_backup:
        fields["safety_backup"] = False
    if keep_previous is not None:
        fields["keep_previous_hours"] = keep_previous
    return fields


def heading(opts: Globals, text: str) -> None:
    """The "Backups" heading and ``text`` under it (usually ``{app} ({env})``)."""
    opts.out.heading("Backups")
    opts.out.line(text)


def target_summary(target: Target) -> dict[str, object]:
    """The ``app`` and ``environment`` every JSON result starts with."""
    return {"app": target.app, "environment": target.env}


def check_id(backup_id: str) -> None:
    """Raises ConfigError when ``backup_id`` is not shaped like a backup id."""
    from ..core.layout import is_backup_id
    from ..errors import ConfigError

    if not is_backup_id(backup_id):
        raise ConfigError(f"'{backup_id}' is not a backup id (expected b<unix seconds>-<8 chars>, "
                          "see `tako backups list`).")


def ask_every_server(opts: Globals, target: Target, method: str, parse: Callable[[Any], Any],
                     all_failed: str, extra: dict[str, Any] | None = None) -> list[Outcome]:
    """Print the heading, then send ``method`` with the app id (and ``extra`` fields) to each of
    the target's servers (printing the notes their replies carry).

    Only when every server failed, raises as :func:`.targets.raise_failures` does, with
    ``all_failed`` as the message."""
    from .targets import call_servers, raise_failures

    heading(opts, target.title)
    outcomes = call_servers(target.servers, method, {"app": target.app_id, **(extra or {})}, parse,
                            out=opts.out)
    if all(o.error is not None for o in outcomes):
        raise_failures(outcomes, all_failed)
    return outcomes


def failures(outcomes: list[Outcome]) -> list[dict[str, str]]:
    """The JSON ``errors`` of the servers that failed: ``{"server", "message"}`` each."""
    from .targets import failure_text

    return [{"server": o.name, "message": failure_text(o)} for o in outcomes if o.error is not None]


def confirm_replace(question: str, no_terminal: str, cancelled: str) -> None:
    """Ask ``question`` on a terminal before live data is replaced.

    Raises ConfigError(``no_terminal``) without a terminal, Interrupted(``cancelled``) when declined."""
    from ..errors import ConfigError, Interrupted
    from .prompts import can_prompt, confirm

    if not can_prompt():
        raise ConfigError(no_terminal)
    typer.echo("This stops the app and replaces its data directory.", err=True)
    if not confirm(question):
        raise Interrupted(cancelled)
