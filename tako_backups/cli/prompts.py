"""Questions on a terminal. Without one, a missing value is an error naming its flag."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from ..errors import ConfigError, Interrupted

if TYPE_CHECKING:
    from ..project.envkeys import KeyPrompts


def stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def can_prompt() -> bool:
    """Prompts need a terminal on stdin (they are written to stderr, so ``--json`` stays clean)."""
    return stdin_is_terminal()


def _ask(label: str, *, hide: bool, default: str | None = None, confirm: bool = False) -> str:
    try:
        value = typer.prompt(label, hide_input=hide, default=default, show_default=False, err=True,
                             confirmation_prompt=confirm)
    except typer.Abort:
        raise Interrupted("Cancelled.") from None
    return str(value)


def value_or_prompt(value: str | None, flag: str, label: str, *, hide: bool = True) -> str:
    """``value`` when given and not blank; else ask on a terminal (hidden input for secrets).

    Raises ConfigError "Missing --flag (no terminal to prompt on)." without a terminal, and
    "<label> cannot be empty." for a blank answer.
    """
    if value is not None and value.strip():
        return value
    if not can_prompt():
        raise ConfigError(f"Missing {flag} (no terminal to prompt on).")
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
