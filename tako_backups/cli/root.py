"""The ``tako`` root group: command groups load lazily, global options may come anywhere, and the
one place that turns errors into messages and exit codes.

Exit codes: 0 success, 1 error (a TakoError's own ``exit_code``), 2 bad usage, 130 interrupted
or declined.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from .context import Globals, hoist_global_options


def _base_named(cls: type, name: str) -> type[Exception]:
    return next(base for base in cls.__mro__ if base.__name__ == name)


# Usage errors are click's UsageError and ClickException. Typer (which carries its own click)
# re-exports neither, but its public BadParameter derives from both, so they are found through it
# rather than through typer's private click module.
USAGE_ERROR = _base_named(typer.BadParameter, "UsageError")
CLICK_EXCEPTION = _base_named(typer.BadParameter, "ClickException")


@dataclass(frozen=True)
class LazyCommand:
    """A command or group defined as ``attribute`` of ``module``, imported only when used."""

    module: str
    attribute: str
    help: str

    def available(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def load(self, name: str) -> Any:
        obj = getattr(importlib.import_module(self.module), self.attribute)
        command = typer.main.get_command(obj) if isinstance(obj, typer.Typer) else obj
        command.name = name
        return command


class TakoGroup(TyperGroup):
    """The root group. ``lazy_commands`` maps a name to a :class:`LazyCommand`; ``tako --help``
    lists them from their help text without importing them."""

    lazy_commands: dict[str, LazyCommand] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: dict[str, Any] = {}
        self._listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        lazy = [name for name, entry in self.lazy_commands.items() if entry.available()]
        return sorted(set(super().list_commands(ctx)) | set(lazy))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        eager = super().get_command(ctx, cmd_name)
        if eager is not None:
            return eager
        entry = self.lazy_commands.get(cmd_name)
        if entry is None or not entry.available():
            return None
        if self._listing:
            return TyperCommand(cmd_name, help=entry.help, short_help=entry.help)
        if cmd_name not in self._loaded:
            self._loaded[cmd_name] = entry.load(cmd_name)
        return self._loaded[cmd_name]

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def invoke(self, ctx: Any) -> Any:
        from ..errors import Interrupted

        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted("Interrupted.") from None

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             windows_expand_args: bool = True, **extra: Any) -> Any:
        opts = extra.setdefault("obj", Globals())
        argv = hoist_global_options(list(sys.argv[1:] if args is None else args))
        try:
            result = super().main(args=argv, prog_name=prog_name or "tako", complete_var=complete_var,
                                  standalone_mode=False, windows_expand_args=windows_expand_args, **extra)
            code = result if isinstance(result, int) else 0
            if code == 0 and opts.json and opts.command:
                opts.out.result(opts.command)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException as exc:  # noqa: BLE001 - the one place errors become exit codes
            code = exit_code_for(exc, opts, argv)
        finally:
            opts.out.finish()
        if standalone_mode:
            sys.exit(code)
        return code


def exit_code_for(exc: BaseException, opts: Globals, argv: list[str]) -> int:
    """Report ``exc`` the way the CLI promises and return its exit code: a TakoError prints
    ``error: <message>`` (never a traceback) and exits with its ``exit_code``; Ctrl-C and declined
    prompts exit 130; usage errors 2; anything else prints a one-line message (the traceback only
    with ``-v``) and exits 1. With ``--json`` the failure is also one JSON object on stdout."""
    from ..errors import TakoError

    if "--json" in argv:
        opts.json = opts.out.json_mode = True
    if "-v" in argv or "--verbose" in argv:
        opts.verbose = opts.out.verbose = True
    out = opts.out
    if isinstance(exc, TakoError):
        out.failure(exc.message, getattr(exc, "details", None))
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        out.failure("Interrupted.")
        return 130
    if isinstance(exc, typer.Abort):
        out.failure("Cancelled.")
        return 130
    if isinstance(exc, CLICK_EXCEPTION):
        if isinstance(exc, USAGE_ERROR) and not opts.json:
            exc.show()  # type: ignore[attr-defined]
        else:
            out.failure(exc.format_message())  # type: ignore[attr-defined]
        return int(exc.exit_code)  # type: ignore[attr-defined]
    out.failure(f"Unexpected {exc.__class__.__name__}. Run again with -v for the details.")
    if opts.verbose:
        typer.echo("".join(traceback.format_exception(exc)), err=True)
    return 1
