"""``tako backups notify secret --env E``: set the secret that signs an env's backup webhook;
``tako backups notify test --env E``: have each server send a test event.

The webhook itself is ``notify.webhook`` under ``[envs.<env>]`` in tako-backups.toml; the secret
goes next to it, under ``[envs.<env>.secrets]``, encrypted with the env's key (never printed).
It is read from a hidden prompt on a terminal, else from the first line of stdin. ``test`` sends
the settings in tako-backups.toml (so they can be tried before a deploy), or, when the env has
none there, lets each server use those it was deployed with (our tako-server only).
"""

from __future__ import annotations

from typing import Any

import typer

from .backups_common import ENV_OPTION, SERVER_OPTION, heading, target_summary
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


@notify_app.command("test")
def test(
    ctx: typer.Context,
    env: str | None = ENV_OPTION,
    server: str | None = SERVER_OPTION,
) -> None:
    """Send a test notification from each server to the env's webhook and/or command."""
    from ..errors import RemoteError
    from ..project.backup_settings import backup_extensions_for
    from ..project.secrets import load_secrets
    from ..remote import protocol
    from .prompts import key_prompts
    from .replies import parse_notify_test
    from .targets import call_servers, raise_failures, resolve_target

    opts = get_globals(ctx)
    target = resolve_target(opts, env, server)
    settings = backup_extensions_for(target.project, target.env, load_secrets(target.project.secrets_path),
                                     key_prompts()).notify
    heading(opts, target.title)
    if opts.dry_run:
        opts.out.dry_run_done("backups notify test", target_summary(target),
                              [f"send a test notification from {s.name}" for s in target.servers],
                              nothing="contacted")
        return
    payload: dict[str, Any] = {"app": target.app_id}
    if settings is not None:
        payload["notify"] = settings.to_dict()
    outcomes = call_servers(target.servers, protocol.NOTIFY_TEST, payload, parse_notify_test,
                            out=opts.out, spinner="Sending a test notification")
    failed = 0
    for o in outcomes:
        if o.error is not None:
            continue
        for shown, outcome in o.data["results"].items():
            if outcome == "delivered":
                opts.out.line(f"{o.name}: {shown}: delivered")
            else:
                failed += 1
                opts.out.warning(f"{o.name}: {shown}: {outcome}")
    raise_failures(outcomes, "Failed to send a test notification from {failed} of {total} servers.")
    if failed:
        raise RemoteError(f"{failed} test notification{'' if failed == 1 else 's'} could not be delivered.")
    opts.out.result("backups notify test", {**target_summary(target), "results": [
        {"server": o.name, "results": o.data["results"]} for o in outcomes]})
