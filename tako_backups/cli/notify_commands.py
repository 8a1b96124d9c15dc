"""``tako backups notify secret --env E``: set the secret that signs an env's backup webhook.

The webhook itself is ``notify.webhook`` under ``[envs.<env>]`` in tako-backups.toml; the secret
goes next to it, under ``[envs.<env>.secrets]``, encrypted with the env's key (never printed).
It is read from a hidden prompt on a terminal, else from the first line of stdin.
"""

from __future__ import annotations

import typer

from .backups_common import ENV_OPTION
from .context import get_globals

notify_app = typer.Typer(name="notify", rich_markup_mode=None, no_args_is_help=True, add_completion=False,
                         help="Manage backup notifications (tako-backups.toml).")


@notify_app.command("secret")
def secret(ctx: typer.Context, env: str | None = ENV_OPTION) -> None:
    """Set the secret that signs the env's webhook requests (prompted, or stdin's first line)."""
    from collections.abc import Mapping

    from ..errors import ConfigError
    from ..policy import parse_env_settings
    from ..project.backup_settings import SETTINGS_NAME, WEBHOOK_SECRET, load_backup_settings
    from ..project.secrets import SecretValue, load_secrets, open_env_key, save_secrets, seal
    from ..project.settings_edit import store_extension_secrets
    from ..project.tako_toml import load_project
    from .context import resolve_env
    from .prompts import first_stdin_line, hidden, key_prompts, stdin_is_terminal

    opts = get_globals(ctx)
    name = resolve_env(opts, env)
    project = load_project(opts.config_path)
    found = load_backup_settings(project).envs.get(name)
    notify = found.table.get("notify") if found is not None else None
    if found is None or not isinstance(notify, Mapping) or "webhook" not in notify:
        raise ConfigError(f"Environment '{name}' has no webhook to sign; set notify.webhook under "
                          f"[envs.{name}] in {SETTINGS_NAME} first.")
    if opts.dry_run:
        opts.out.dry_run_done("backups notify secret", {"environment": name},
                              [f"store the webhook secret of {name} in {SETTINGS_NAME}"], nothing="written")
        return
    if stdin_is_terminal():
        value = hidden("Webhook secret")
    else:
        line = first_stdin_line()
        if line is None:
            raise ConfigError("No webhook secret provided on stdin.")
        value = line
    parse_env_settings(found.table, found.where, value)
    secrets = load_secrets(project.secrets_path)
    new_env = name not in secrets.envs
    key = open_env_key(secrets, name, key_prompts(), create=True)
    if new_env:  # the env's key id first, so no value is ever sealed under an unrecorded key
        save_secrets(secrets)
    store_extension_secrets(project, name, {WEBHOOK_SECRET: SecretValue(seal(value, key.key))})
    opts.out.success(f"Stored the webhook secret of {name} in {SETTINGS_NAME}.")
    opts.out.hint("Deploy or run `tako backups now` to send it to your servers.")
    opts.out.result("backups notify secret", {"environment": name})
