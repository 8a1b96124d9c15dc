"""Questions on a terminal. Without one (or with ``--ci``), a missing value is an error.

Interactive means: stdin is a terminal and the run is not ``--ci`` (Tako's rule also asks for a
terminal on stderr; ours prompts on stderr whatever it is, so ``2>log`` still works).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from ..errors import ConfigError, Interrupted

if TYPE_CHECKING:
    from ..project.envkeys import KeyPrompts


PASSWORD_PROMPT_NEEDS_TERMINAL = "Password prompt requires an interactive terminal"
_ci = False


def set_ci(value: bool) -> None:
    """``--ci`` for this run: never prompt (the root command sets it on every run)."""
    global _ci
    _ci = value


def stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def can_prompt() -> bool:
    """Prompts need a terminal on stdin and no ``--ci`` (they are written to stderr, so ``--json``
    stays clean)."""
    return not _ci and stdin_is_terminal()


def _ask(label: str, *, hide: bool, default: str | None = None, confirm: bool = False) -> str:
    try:
        value = typer.prompt(label, hide_input=hide, default=default, show_default=False, err=True,
                             confirmation_prompt=confirm)
    except typer.Abort:
        raise Interrupted("Cancelled.") from None
    return str(value)


def value_or_prompt(value: str | None, flag: str, label: str, *, hide: bool = True) -> str:
    """``value`` when given and not blank; else ask on a terminal (hidden input for secrets).

    Raises ConfigError with Tako's texts: ``Password prompt requires an interactive terminal``
    (then "Pass {flag}." on its own line) without a terminal, and "<label> cannot be empty." for a
    blank answer.
    """
    if value is not None and value.strip():
        return value
    if not can_prompt():
        raise ConfigError(f"{PASSWORD_PROMPT_NEEDS_TERMINAL}\nPass {flag}.")
    answer = _ask(label, hide=hide)
    if not answer.strip():
        raise ConfigError(f"{label} cannot be empty.")
    return answer


def optional_text(value: str | None, label: str, hint: str) -> str | None:
    """``value`` when given; else ask on a terminal (blank allowed); None without a terminal."""
    if value is not None:
        return value
    if not can_prompt():
        return None
    typer.echo(typer.style(hint, dim=True), err=True)
    return _ask(label, hide=False, default="")


def hidden(label: str) -> str:
    """Ask for a secret with hidden input. Raises ConfigError (Tako's text) when not interactive,
    Interrupted on Ctrl-C."""
    if not can_prompt():
        raise ConfigError(PASSWORD_PROMPT_NEEDS_TERMINAL)
    return _ask(label, hide=True)


def choose(label: str, options: list[str]) -> str:
    """Pick one of ``options`` on a terminal (by its number or its text; asked again until it
    is one). Raises Interrupted on Ctrl-C."""
    for number, option in enumerate(options, 1):
        typer.echo(f"  {number}. {option}", err=True)
    while True:
        answer = _ask(label, hide=False).strip()
        if answer in options:
            return answer
        if answer.isdigit() and 1 <= int(answer) <= len(options):
            return options[int(answer) - 1]
        typer.echo(f"Choose 1 to {len(options)}.", err=True)


def first_stdin_line() -> str | None:
    """The first line of stdin with CR/LF stripped (nothing else), or None when stdin is empty."""
    line = sys.stdin.readline()
    return None if line == "" else line.rstrip("\r\n")


def confirm(question: str, default: bool = False) -> bool:
    """Ask yes/no on a terminal. Raises Interrupted on Ctrl-C."""
    try:
        return typer.confirm(question, default=default, err=True)
    except typer.Abort:
        raise Interrupted("Cancelled.") from None


def choose_passphrase(env: str) -> str | None:
    """When a new env key is made on a terminal: a passphrase to derive it from, or None for a
    random key file."""
    if not can_prompt():
        return None
    if not confirm(f"Derive the {env} key from a passphrase (instead of a random key file)?"):
        return None
    return _ask("Passphrase", hide=True, confirm=True) or None


def ask_passphrase(env: str, key_id: str) -> str | None:
    """When the key file of an env is missing on a terminal: its passphrase, or None."""
    if not can_prompt():
        return None
    typer.echo(f"No key file for {env} (key {key_id}).", err=True)
    if not confirm(f"Enter the {env} passphrase?"):
        return None
    return _ask("Passphrase", hide=True) or None


def key_prompts() -> KeyPrompts:
    """The :class:`~tako_backups.project.envkeys.KeyPrompts` for this terminal."""
    from ..project.envkeys import KeyPrompts

    return KeyPrompts(choose_passphrase=choose_passphrase, ask_passphrase=ask_passphrase)
