"""``tako secrets key export | import``: move an environment's key between machines, as Tako does
(tako/src/commands/secret/key.rs), with Tako's behaviour and texts.

- ``export [--env]`` copies the env's key bundle to the clipboard (never prints it):
  ``✔ Key copied to clipboard.``
- ``import [--passphrase] [--env]`` reads an exported bundle (a hidden prompt on a terminal, else
  the first line of stdin: ``printf '%s\\n' "$TAKO_SECRETS_KEY" | tako secrets key import`` in CI)
  or a passphrase, checks it decrypts the env's values, and saves it as
  ``<data dir>/keys/<key_id>`` (0600): ``✔ Imported {env} key.``

Ours: the check also covers the env's storage credentials and its values in tako-backups.toml,
and a key file holding another key is replaced only when the new key proved itself.
``TAKO_SECRETS_PASSPHRASE`` (our extension) still stands in for the key file at run time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from .context import Globals, get_globals

if TYPE_CHECKING:
    from ..project.key_bundle import Imported

secrets_app = typer.Typer(name="secrets", rich_markup_mode=None, no_args_is_help=True, add_completion=False,
                          help="Export and import the keys of your encrypted secrets.")
key_app = typer.Typer(name="key", rich_markup_mode=None, no_args_is_help=True, add_completion=False,
                      help="Export or import an environment's key.")
secrets_app.add_typer(key_app)

ENV_OPTION: Any = typer.Option(None, "--env", help="Environment (asked on a terminal when omitted).")


def _config_path(opts: Globals) -> Path:
    """The project's tako.toml, which must exist. Raises ConfigError (Tako's text)."""
    from ..errors import ConfigError

    path = opts.config_path
    if not path.is_file():
        raise ConfigError(f"Config file not found: {path}")
    return path


def _secrets_path(config: Path) -> Path:
    from ..project.model import SECRETS_RELATIVE

    return config.parent / SECRETS_RELATIVE


def _checked_env(env: str) -> str:
    from ..primitives.names import env_name_problem, validation_error

    problem = env_name_problem(env)
    if problem:
        raise validation_error(problem)
    return env


def _pick_env(config: Path, label: str) -> str:
    """An env chosen on the terminal among those of tako.toml and secrets.json."""
    from ..project.secrets import load_secrets
    from ..project.tako_toml import is_deployable_env, load_project
    from .prompts import choose

    names = set(load_secrets(_secrets_path(config)).envs)
    names |= {name for name in load_project(config).envs if is_deployable_env(name)}
    typer.echo(label, err=True)
    chosen = choose("Environment", sorted(names)) if names else typer.prompt("Environment", err=True)
    return _checked_env(chosen)


@key_app.command("export")
def export(ctx: typer.Context, env: str | None = ENV_OPTION) -> None:
    """Copy an environment's key to the clipboard, to import it elsewhere."""
    from ..errors import ConfigError
    from ..project.key_bundle import encode_bundle
    from ..project.secrets import load_secrets, open_env_key
    from .clipboard import copy_to_clipboard
    from .prompts import can_prompt

    opts = get_globals(ctx)
    config = _config_path(opts)
    if env is not None:
        env = _checked_env(env)
    elif can_prompt():
        env = _pick_env(config, "Key environment")
    else:
        raise ConfigError("Missing required environment. Pass --env or run interactively to choose one.")
    secrets = load_secrets(_secrets_path(config))
    if env not in secrets.envs:
        raise ConfigError(f"No secrets configured for environment '{env}'.")
    key = open_env_key(secrets, env)
    copy_to_clipboard(encode_bundle(key.key_id, key.key))
    opts.out.success("Key copied to clipboard.")
    opts.out.result("secrets key export", {"environment": env, "key_id": key.key_id})


@key_app.command("import")
def import_key(
    ctx: typer.Context,
    passphrase: bool = typer.Option(False, "--passphrase", help="Import a passphrase-derived key."),
    env: str | None = ENV_OPTION,
) -> None:
    """Import an exported key (prompt, or the first line of stdin) or a passphrase."""
    from .prompts import can_prompt, choose

    opts = get_globals(ctx)
    config = _config_path(opts)
    if env is not None:
        env = _checked_env(env)
    if not passphrase and can_prompt():
        passphrase = choose("Key source", ["Exported key", "Passphrase"]) == "Passphrase"
    imported = _import_passphrase(config, env) if passphrase else _import_bundle(config, env)
    if imported.env is not None:
        opts.out.success(f"Imported {imported.env} key.")
    else:
        opts.out.success(f"Imported key {imported.key_id}.")
    opts.out.result("secrets key import", {"environment": imported.env, "key_id": imported.key_id})


def _settings_values(config: Path) -> dict[str, list[str]]:
    """Each env's encrypted values in tako-backups.toml (none when there is no such file)."""
    from ..project.backup_settings import SETTINGS_NAME, load_backup_settings
    from ..project.tako_toml import load_project

    if not (config.parent / SETTINGS_NAME).exists():
        return {}
    settings = load_backup_settings(load_project(config))
    return {name: [v.value for v in found.secrets.values()] for name, found in settings.envs.items()}


def _read_line(label: str, empty_stdin: str) -> str:
    """A hidden prompt when stdin is a terminal, else stdin's first line (CR/LF stripped)."""
    from ..errors import ConfigError
    from .prompts import first_stdin_line, hidden, stdin_is_terminal

    if stdin_is_terminal():
        return hidden(label)
    line = first_stdin_line()
    if line is None:
        raise ConfigError(empty_stdin)
    return line


def _import_bundle(config: Path, env: str | None) -> Imported:
    from ..errors import ConfigError
    from ..project.key_bundle import decode_bundle, import_bundle
    from ..project.secrets import load_secrets, save_secrets

    text = _read_line("Exported key", "No exported key provided on stdin")
    if not text.strip():
        raise ConfigError("Exported key cannot be empty")
    key_id, key = decode_bundle(text)
    secrets = load_secrets(_secrets_path(config))
    imported, changed = import_bundle(secrets, key_id, key, env, _settings_values(config))
    if changed:
        save_secrets(secrets)
    return imported


def _import_passphrase(config: Path, env: str | None) -> Imported:
    from ..errors import ConfigError
    from ..project.key_bundle import passphrase_key, save_passphrase_key
    from ..project.secrets import load_secrets, save_secrets
    from .prompts import can_prompt, hidden, stdin_is_terminal

    if env is None:
        if not can_prompt():
            raise ConfigError("Missing required environment. Pass --env with --passphrase.")
        env = _pick_env(config, "Key environment")
    secrets = load_secrets(_secrets_path(config))
    extra = _settings_values(config).get(env, [])
    if stdin_is_terminal():
        while True:
            typed = hidden("Passphrase")
            try:
                key, proven = passphrase_key(secrets, env, typed, extra)
                break
            except ConfigError:
                typer.echo("Invalid passphrase", err=True)
    else:
        typed = _read_line("Passphrase", "No passphrase provided on stdin")
        key, proven = passphrase_key(secrets, env, typed, extra)
    imported = save_passphrase_key(secrets, env, key, proven)
    save_secrets(secrets)
    return imported
