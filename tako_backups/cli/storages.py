"""``tako storages add | credentials | list``: attach storage to an environment and manage its
credentials. Secret values are prompted with hidden input and never printed.

``add`` and ``credentials`` print Tako's lines (``✔ Attached storage ...`` / ``✔ Updated storage
credentials ...`` and the ``Deploy to sync ...`` hint). Credentials go to ``.tako/secrets.json``
as Tako keeps them, except for a resource that is an env's ``copy_to`` (tako-backups.toml) and that
Tako does not use in that env: Tako's deploy refuses credentials no binding or backup uses, so
those go to ``[envs.<env>.secrets]`` of tako-backups.toml. ``list`` is ours.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import typer

from .context import Globals, get_globals, resolve_env

if TYPE_CHECKING:
    from ..project.model import Project
    from ..project.secrets import Secrets

storages_app = typer.Typer(name="storages", rich_markup_mode=None, no_args_is_help=True, add_completion=False,
                           help="Attach storage to environments and manage its credentials.")


ENV_OPTION: Any = typer.Option(None, "--env", help="Environment (default: production).")
ACCESS_KEY_ID_OPTION: Any = typer.Option(None, "--access-key-id",
                                         help="Access key id (prompted when omitted).")
SECRET_ACCESS_KEY_OPTION: Any = typer.Option(None, "--secret-access-key",
                                             help="Secret access key (prompted when omitted).")
EXPIRES_ON_OPTION: Any = typer.Option(None, "--expires-on",
                                      help="Credential expiry: YYYY-MM-DD, 'in 30 days' or never.")


class Provider(StrEnum):
    s3 = "s3"
    local = "local"


def _read_credentials(access_key_id: str | None, secret_access_key: str | None,
                      expires_on: str | None) -> tuple[str, str, str | None]:
    """Flags, else hidden prompts on a terminal; the expiry normalized (prompted when omitted)."""
    from ..project.expiry import EXPIRES_ON_HINT, normalize_expires_on
    from .prompts import optional_text, value_or_prompt

    key_id = value_or_prompt(access_key_id, "--access-key-id", "Access key id")
    secret = value_or_prompt(secret_access_key, "--secret-access-key", "Secret access key")
    return key_id, secret, normalize_expires_on(optional_text(expires_on, "Expires on", EXPIRES_ON_HINT))


def _store_credentials(opts: Globals, project: Project, env: str, resource: str, flags: tuple[Any, ...],
                       *, copy_only: bool = False) -> str | None:
    """Open the env key (created when the env has no encrypted value yet), read the credentials,
    encrypt them and save them atomically: in secrets.json, or (``copy_only``) in tako-backups.toml.
    A missing key is reported before anything is asked. Returns the expiry."""
    from ..project.backup_settings import COPY_ACCESS_KEY_ID, COPY_SECRET_ACCESS_KEY
    from ..project.secrets import (
        SecretValue,
        load_secrets,
        open_env_key,
        save_secrets,
        seal,
        set_storage_credentials,
    )
    from ..project.settings_edit import store_extension_secrets
    from .prompts import key_prompts

    secrets = load_secrets(project.secrets_path)
    found = secrets.envs.get(env)
    if found is not None and next(found.encrypted_values(), None) is not None:
        open_env_key(secrets, env, key_prompts())
    access_key_id, secret_access_key, expires_on = _read_credentials(*flags)
    new_env = env not in secrets.envs
    key = open_env_key(secrets, env, key_prompts(), create=True)
    if copy_only:
        if new_env:  # the env's key id first, so no value is ever sealed under an unrecorded key
            save_secrets(secrets)
        store_extension_secrets(project, env, {
            COPY_ACCESS_KEY_ID: SecretValue(seal(access_key_id, key.key), expires_on),
            COPY_SECRET_ACCESS_KEY: SecretValue(seal(secret_access_key, key.key), expires_on)})
    else:
        set_storage_credentials(secrets, env, resource, key, access_key_id, secret_access_key, expires_on)
        save_secrets(secrets)
    if key.created:
        opts.out.detail(f"Created the {env} key {key.key_id} ({key.source}).")
    return expires_on


@storages_app.command("add")
def add(
    ctx: typer.Context,
    binding: str = typer.Argument(..., help="App storage binding name, e.g. uploads."),
    env: str | None = ENV_OPTION,
    resource: str | None = typer.Option(None, "--resource",
                                        help="Backing storage resource name (default: the binding name)."),
    provider: Provider = typer.Option(Provider.s3, "--provider", help="Storage provider."),
    bucket: str | None = typer.Option(None, "--bucket", help="Bucket name."),
    endpoint: str | None = typer.Option(None, "--endpoint", help="S3-compatible endpoint (https://...)."),
    region: str | None = typer.Option(None, "--region", help="Region (default: auto)."),
    access_key_id: str | None = ACCESS_KEY_ID_OPTION,
    secret_access_key: str | None = SECRET_ACCESS_KEY_OPTION,
    expires_on: str | None = EXPIRES_ON_OPTION,
    force_path_style: bool = typer.Option(False, "--force-path-style", help="Use path-style bucket URLs."),
    public_base_url: str | None = typer.Option(None, "--public-base-url",
                                               help="Public base URL for objects."),
) -> None:
    """Attach a storage resource to this app."""
    from ..errors import ConfigError
    from ..project.storage_setup import S3Options, check_names, plan_binding
    from ..project.tako_toml import load_project, read_text
    from ..project.toml_edit import write_config

    opts = get_globals(ctx)
    env = resolve_env(opts, env, announce=False)
    check_names(env, binding)
    project = load_project(opts.config_path)
    options = S3Options(bucket, endpoint, region, force_path_style, public_base_url)
    if provider is Provider.local and (access_key_id or secret_access_key or expires_on):
        raise ConfigError("S3 storage options cannot be used with local storage.")
    edit = plan_binding(project, read_text(project.path, "tako.toml"), env, binding, provider.value,
                        resource, options)
    is_s3 = provider is Provider.s3
    summary = {"app": project.declared_name, "environment": env, "binding": binding,
               "resource": edit.resource_name, "provider": provider.value, "dry_run": opts.dry_run}
    if opts.dry_run:
        declared = f" and [storages.{edit.resource_name}]" if edit.resource is not None else ""
        steps = [f"write {project.path.name}: [envs.{env}].storages.{binding} = \"{edit.resource_name}\""
                 + declared]
        if is_s3:
            steps.append(f"store credentials of '{edit.resource_name}' for {env} in {project.secrets_path}")
        opts.out.dry_run_done("storages add", summary, steps, nothing="written")
        return
    if is_s3:
        _store_credentials(opts, edit.project, env, edit.resource_name,
                           (access_key_id, secret_access_key, expires_on))
    write_config(project.path, edit.new_text)
    opts.out.success(f"Attached storage {binding} to {env}.")
    opts.out.hint("Deploy to sync the storage binding to your server.")
    opts.out.result("storages add", summary)


@storages_app.command("credentials")
def credentials(
    ctx: typer.Context,
    resource: str = typer.Argument(..., help="Storage resource name from tako.toml."),
    env: str | None = ENV_OPTION,
    access_key_id: str | None = ACCESS_KEY_ID_OPTION,
    secret_access_key: str | None = SECRET_ACCESS_KEY_OPTION,
    expires_on: str | None = EXPIRES_ON_OPTION,
) -> None:
    """Set or rotate the credentials of an S3 storage resource."""
    from ..errors import ConfigError
    from ..primitives.names import storage_name_problem, validation_error
    from ..project.backup_settings import copy_only_resource, load_backup_settings
    from ..project.tako_toml import load_project

    opts = get_globals(ctx)
    env = resolve_env(opts, env, announce=False)
    problem = storage_name_problem(resource)
    if problem:
        raise validation_error(problem)
    project = load_project(opts.config_path)
    if resource not in project.storages:
        raise ConfigError(f"Storage resource '{resource}' is not declared in tako.toml.")
    copy_only = copy_only_resource(project, load_backup_settings(project), env, resource)
    config = project.envs.get(env)
    if not copy_only and (config is None or (resource not in config.storages.values()
                                             and config.backup_storage != resource)):
        opts.out.warning(f"Storage resource '{resource}' is not bound or used for backups in {env}; "
                         "tako deploy refuses credentials nothing uses.")
    where = "tako-backups.toml" if copy_only else str(project.secrets_path)
    if opts.dry_run:
        opts.out.dry_run_done("storages credentials", {"environment": env, "resource": resource},
                              [f"store credentials of '{resource}' for {env} in {where}"], nothing="written")
        return
    stored = _store_credentials(opts, project, env, resource, (access_key_id, secret_access_key, expires_on),
                                copy_only=copy_only)
    opts.out.success(f"Updated storage credentials {resource} for {env}.")
    opts.out.hint("Deploy to sync the storage credentials to your server.")
    if copy_only:
        opts.out.hint(f"Kept in tako-backups.toml ([envs.{env}.secrets]): '{resource}' is a backup copy "
                      "target Tako does not use, and Tako's deploy refuses such credentials in secrets.json.")
    opts.out.result("storages credentials", {
        "environment": env, "resource": resource, "expires_on": stored, "dry_run": False,
        "stored_in": "tako-backups.toml" if copy_only else "secrets.json"})


@storages_app.command("list")
def list_storages(
    ctx: typer.Context,
    env: str | None = typer.Option(None, "--env", help="Only this environment (default: all)."),
) -> None:
    """Show storage resources, bindings, backup targets and credential expiry (never values)."""
    from ..project.secrets import load_secrets
    from ..project.tako_toml import load_project

    opts = get_globals(ctx)
    project = load_project(opts.config_path)
    if env is not None:
        project.env(env)
    overview = storage_overview(project, load_secrets(project.secrets_path), env)
    _render_overview(opts, overview)
    opts.out.result("storages list", overview)


def _credential_state(expires_on: str | None, now: dt.datetime) -> dict[str, Any]:
    from ..project.expiry import expires_soon, is_expired

    return {"set": True, "expires_on": expires_on, "expired": is_expired(expires_on, now),
            "expires_soon": expires_soon(expires_on, now)}


def storage_overview(project: Project, secrets: Secrets, only_env: str | None = None,
                     now: dt.datetime | None = None) -> dict[str, Any]:
    """Resources, and per env its bindings, backup target and credential status (no values)."""
    now = now or dt.datetime.now(dt.UTC)
    resources = {name: {"provider": r.provider, "bucket": r.bucket, "endpoint": r.endpoint,
                        "region": r.region,
                        "force_path_style": r.force_path_style, "public_base_url": r.public_base_url}
                 for name, r in sorted(project.storages.items())}
    names = sorted(set(project.envs) | {e for e, s in secrets.envs.items() if s.storages})
    envs: dict[str, Any] = {}
    for name in names if only_env is None else [only_env]:
        config = project.envs.get(name)
        stored = secrets.envs[name].storages if name in secrets.envs else {}
        bindings = dict(config.storages) if config else {}
        backup = config.backup_storage if config else None
        wanted = sorted(({r for r in bindings.values() if r != "local"} | ({backup} if backup else set()))
                        | set(stored))
        creds = {}
        for resource in wanted:
            found = stored.get(resource)
            creds[resource] = (_credential_state(found.access_key_id.expires_on, now) if found else
                               {"set": False, "expires_on": None, "expired": False, "expires_soon": False})
        envs[name] = {"storages": bindings, "backup": backup, "credentials": creds}
    return {"app": project.declared_name, "resources": resources, "environments": envs}


def _render_overview(opts: Globals, overview: dict[str, Any]) -> None:
    out = opts.out
    out.heading("Storages")
    out.line(overview["app"] or "(tako.toml has no name)")
    out.line("Resources:")
    if not overview["resources"]:
        out.line("  (none declared)")
    for name, r in overview["resources"].items():
        extras = (", path-style" if r["force_path_style"] else "") + \
            (f", public {r['public_base_url']}" if r["public_base_url"] else "")
        out.line(f"  {name}: {r['provider']}, bucket {r['bucket']} at {r['endpoint']}, "
                 f"region {r['region']}{extras}")
    for env, info in overview["environments"].items():
        out.line(f"{env}:")
        if not info["storages"] and not info["backup"] and not info["credentials"]:
            out.line("  (no storages)")
        for binding, resource in info["storages"].items():
            out.line(f"  storage {binding} -> {resource}")
        if info["backup"]:
            out.line(f"  backup -> {info['backup']}")
        for resource, state in info["credentials"].items():
            out.line(f"  credentials {resource}: {_describe(state)}")


def _describe(state: dict[str, Any]) -> str:
    if not state["set"]:
        return "missing"
    date = state["expires_on"]
    if date is None:
        return "set, no expiry"
    if state["expired"]:
        return f"expired on {date}"
    return f"set, expires on {date}" + (" (within 30 days)" if state["expires_soon"] else "")
