"""The global options (``-c``, ``--json``, ``--dry-run``, ``--ci``, ``-v``) and the
:class:`Globals` every command reads them from (``get_globals(ctx)``).

Global options may come anywhere on the command line (``tako storages list --json``): the root
group moves them in front of the command before parsing (:func:`hoist_global_options`). So a
command must not define ``-c``, ``--config``, ``--json``, ``--dry-run``, ``--ci``, ``-v`` or
``--verbose`` itself: it reads ``get_globals(ctx).dry_run`` and friends, and prints through ``.out``.

``--ci`` is Tako's flag for runs without a person: no prompts (a missing answer is an error).
Unlike Tako, output stays as it is (warnings included; see docs/TAKO-DIFFERENCES.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .output import Output

PRODUCTION = "production"
GLOBAL_FLAGS = ("--json", "--dry-run", "--ci", "-v", "--verbose")
GLOBAL_VALUED = ("-c", "--config")


@dataclass
class Globals:
    """Global options of one run, plus the output helper and the command being run."""

    config: str | None = None
    json: bool = False
    dry_run: bool = False
    ci: bool = False
    verbose: bool = False
    command: str | None = None
    _output: Output | None = field(default=None, repr=False)

    @property
    def config_path(self) -> Path:
        """The tako.toml this run uses (``-c`` resolved; ``./tako.toml`` by default)."""
        from ..project.tako_toml import resolve_config_path

        return resolve_config_path(self.config)

    @property
    def out(self) -> Output:
        """The run's output helper (text or JSON, following ``--json``)."""
        if self._output is None:
            from .output import Output

            self._output = Output(json_mode=self.json, verbose=self.verbose, dry_run=self.dry_run)
        return self._output


def get_globals(ctx: Any) -> Globals:
    """The run's Globals, for a command's ``typer.Context``; also records which command runs
    (``"storages add"``) for the JSON result."""
    found = ctx.find_object(Globals)
    if found is None:
        found = ctx.ensure_object(Globals)
    found.command = " ".join(ctx.command_path.split()[1:]) or found.command
    return found


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move global options (and ``-c``'s value) to the front, keeping every other argument in
    order; nothing after ``--`` is touched."""
    front: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        if token == "--":
            rest.extend(argv[index:])
            break
        if token in GLOBAL_FLAGS or token.startswith("--config="):
            front.append(token)
        elif token in GLOBAL_VALUED and index + 1 < len(argv):
            front.extend(argv[index:index + 2])
            index += 1
        else:
            rest.append(token)
        index += 1
    return front + rest


def resolve_env(opts: Globals, requested: str | None, *, announce: bool = True) -> str:
    """``--env`` or, when omitted, production (with the warning "Using production environment"
    when ``announce``, as Tako's backups commands print it).

    Raises ConfigError for a name that is not a valid environment name.
    """
    from ..primitives.names import env_name_problem, validation_error

    if requested is None:
        if announce:
            opts.out.warning(f"Using {PRODUCTION} environment")
        return PRODUCTION
    problem = env_name_problem(requested)
    if problem:
        raise validation_error(problem)
    return requested
