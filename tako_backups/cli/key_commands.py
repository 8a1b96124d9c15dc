"""``tako backups keys rotate | reencrypt | retire``: rotate an env's backup key.

1. ``rotate`` adds a new key to ``.tako/secrets.json``; it becomes the active key and reaches the
   servers with the next ``tako backups now`` or deploy (they get every key of the env).
2. ``reencrypt`` sends the env's settings (all keys) and asks each server to write every retained
   backup that is not under the active key again under it.
3. ``retire`` removes an old key once no retained backup on any of the env's servers needs it.

Only key ids are printed, never key values.
"""

from __future__ import annotations

from collections import Counter

import typer

from .backups_common import ENV_OPTION, heading
from .context import get_globals

keys_app = typer.Typer(name="keys", rich_markup_mode=None, no_args_is_help=True, add_completion=False,
                       help="Rotate, re-encrypt with and retire backup keys.")


@keys_app.command("rotate")
def rotate(ctx: typer.Context, env: str | None = ENV_OPTION) -> None:
    """Add a new backup key; it becomes the active key for new backups."""
    from ..project.key_rotation import rotate_backup_key
    from ..project.secrets import load_secrets
    from ..project.tako_toml import load_project
    from .context import resolve_env
    from .prompts import key_prompts

    opts = get_globals(ctx)
    name = resolve_env(opts, env)
    project = load_project(opts.config_path)
    secrets = load_secrets(project.secrets_path)
    heading(opts, f"{project.name} ({name})")
    if opts.dry_run:
        opts.out.dry_run_done("backups keys rotate", {"app": project.name, "environment": name},
                              [f"add a backup key to {name} in {project.secrets_path}"], nothing="written")
        return
    key_id = rotate_backup_key(project, secrets, name, key_prompts())
    opts.out.line(f"Added backup key {key_id} to {name}; it is now the active key.")
    opts.out.hint(f"Run `tako backups now --env {name}` or deploy to send it to the servers, then "
               f"`tako backups keys reencrypt --env {name}`.")
    opts.out.result("backups keys rotate", {"app": project.name, "environment": name, "key_id": key_id,
                                         "keys": [k.id for k in secrets.envs[name].backup_keys]})


@keys_app.command("reencrypt")
def reencrypt(
    ctx: typer.Context,
    env: str | None = ENV_OPTION,
    server: str | None = typer.Option(None, "--server", help="Only this server (one of the environment's)."),
) -> None:
    """Re-encrypt every retained backup with the active key (on the servers)."""
    from ..project.backup_keys import backups_enabled
    from ..project.backup_wire import backup_settings_to_send
    from ..project.secrets import load_secrets
    from ..remote import protocol
    from .prompts import key_prompts
    from .replies import parse_reencrypted
    from .targets import call_servers, raise_failures, resolve_target

    opts = get_globals(ctx)
    target = resolve_target(opts, env, server)
    project, name = target.project, target.env
    secrets = load_secrets(project.secrets_path)
    heading(opts, target.title)
    if not backups_enabled(project, name):
        from ..errors import ConfigError

        raise ConfigError(f"Backups are not enabled for environment '{name}'.")
    if opts.dry_run:
        opts.out.dry_run_done("backups keys reencrypt", {"app": target.app, "environment": name}, [
            f"re-encrypt the backups of {target.app} ({name}) on {entry.name} with the active key"
            for entry in target.servers])
        return
    binding = backup_settings_to_send(project, secrets, name, key_prompts())
    assert binding is not None
    outcomes = call_servers(target.servers, protocol.REENCRYPT_BACKUPS,
                            {"app": target.app_id, "backup": binding.to_dict()}, parse_reencrypted,
                            out=opts.out, spinner="Re-encrypting backups")
    for o in outcomes:
        if o.error is None:
            count = len(o.data["reencrypted"])
            plural = "" if count == 1 else "s"
            opts.out.line(f"{o.name}: re-encrypted {count} backup{plural} with {o.data['key_id']} "
                       f"({o.data['unchanged']} already used it)")
    raise_failures(outcomes, "Failed to re-encrypt on {failed} of {total} servers.")
    opts.out.result("backups keys reencrypt", {"app": target.app, "environment": name, "results": [
        {"server": o.name, "key_id": o.data["key_id"], "reencrypted": o.data["reencrypted"],
         "unchanged": o.data["unchanged"]} for o in outcomes]})


@keys_app.command("retire")
def retire(
    ctx: typer.Context,
    key_id: str = typer.Argument(..., help="The backup key id to remove (backup-key-<16 hex>)."),
    env: str | None = ENV_OPTION,
) -> None:
    """Remove an old backup key once no retained backup on any server of the env needs it."""
    from ..errors import ConfigError
    from ..project.key_rotation import check_retirable, retire_backup_key
    from ..project.secrets import load_secrets
    from ..remote import protocol
    from .replies import parse_list
    from .targets import call_servers, failure_text, resolve_target

    opts = get_globals(ctx)
    target = resolve_target(opts, env, None)
    project, name = target.project, target.env
    secrets = load_secrets(project.secrets_path)
    check_retirable(secrets, name, key_id)
    heading(opts, target.title)
    outcomes = call_servers(target.servers, protocol.LIST_BACKUPS, {"app": target.app_id}, parse_list,
                            out=opts.out, spinner="Checking the servers' backups")
    for o in outcomes:
        if o.error is not None:
            raise ConfigError(f"Cannot check server '{o.name}' for backups that need {key_id} "
                              f"({failure_text(o)}); not retiring it.")
        using = Counter(b.encryption.key_id for b in o.data)[key_id]
        if using:
            plural = "" if using == 1 else "s"
            raise ConfigError(f"Key {key_id} still encrypts {using} retained backup{plural} on server "
                              f"{o.name}; run tako backups keys reencrypt first.")
    if opts.dry_run:
        opts.out.dry_run_done("backups keys retire", {"app": target.app, "environment": name, "dry_run": True,
                                                      "key_id": key_id},
                              [f"retire backup key {key_id} from {name} in {project.secrets_path}"],
                              nothing="written")
        return
    retire_backup_key(secrets, name, key_id)
    opts.out.line(f"Retired backup key {key_id} from {name}.")
    opts.out.result("backups keys retire", {"app": target.app, "environment": name, "key_id": key_id,
                                         "keys": [k.id for k in secrets.envs[name].backup_keys]})

