"""A command group for the root group's tests: each subcommand fails (or not) in one way."""

from __future__ import annotations

import typer

from tako_backups.cli.context import get_globals
from tako_backups.errors import ConfigError, Interrupted

boom_app = typer.Typer()


@boom_app.command()
def boom(ctx: typer.Context, kind: str) -> None:
    opts = get_globals(ctx)
    if kind == "config":
        raise ConfigError("Broken tako.toml.")
    if kind == "interrupted":
        raise Interrupted("Stopped.")
    if kind == "ctrl-c":
        raise KeyboardInterrupt
    if kind == "abort":
        raise typer.Abort()
    if kind == "bug":
        print(1 / 0)
    if kind == "show":
        opts.out.result("boom", {"dry_run": opts.dry_run, "config": str(opts.config_path)})
