"""The ``tako`` command line.

Command groups are registered in :data:`COMMANDS` below by module and attribute, and imported only
when used, so ``tako --help`` stays fast and never loads boto3. To add a group, add one line.
"""

from __future__ import annotations

import typer

from .. import __version__
from .context import Globals
from .root import LazyCommand, TakoGroup

COMMANDS: dict[str, LazyCommand] = {
    "backups": LazyCommand("tako_backups.cli.backups", "backups_app",
                           "Create, list, download and restore backups."),
    "storages": LazyCommand("tako_backups.cli.storages", "storages_app",
                            "Attach storage to environments and manage its credentials."),
    "demo": LazyCommand("tako_backups.cli.demo", "demo_app",
                        "Run a real backup and restore against local servers (loopback only)."),
    "deploy": LazyCommand("tako_backups.cli.deploy", "deploy_app",
                          "Check the project and deploy an environment."),
    "secrets": LazyCommand("tako_backups.cli.secrets_commands", "secrets_app",
                           "Export and import the keys of your encrypted secrets."),
}
TakoGroup.lazy_commands = COMMANDS

app = typer.Typer(cls=TakoGroup, name="tako", add_completion=False, no_args_is_help=True,
                  rich_markup_mode=None, pretty_exceptions_enable=False,
                  help="Tako-compatible backups and storage for your apps.",
                  context_settings={"help_option_names": ["-h", "--help"]})


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tako-backups {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: str | None = typer.Option(None, "-c", "--config", metavar="PATH",
                                      help="tako.toml to use ('.toml' is added when missing; "
                                           "default ./tako.toml)."),
    json: bool = typer.Option(False, "--json", help="Print one JSON object as the result."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would happen; change nothing."),
    ci: bool = typer.Option(False, "--ci", help="Never prompt (for CI); a missing answer is an error."),
    verbose: bool = typer.Option(False, "-v", "--verbose",
                                 help="Show more detail (tracebacks for unexpected errors)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Show the version and exit."),
) -> None:
    """Tako-compatible backups and storage for your apps."""
    opts = ctx.ensure_object(Globals)
    opts.config = config if config is not None else opts.config
    opts.json = opts.json or json
    opts.dry_run = opts.dry_run or dry_run
    opts.ci = opts.ci or ci
    opts.verbose = opts.verbose or verbose
    from .prompts import set_ci

    set_ci(opts.ci)


def main() -> None:
    """Console script entry point (``tako``)."""
    typer.main.get_command(app).main(prog_name="tako")
