"""``tako deploy``: run every deploy-time check, then deploy to the env's servers (the ``deploy``
RPC: backup settings, the runtime from tako.toml's ``start``, then the post-deploy backup).

Tako's checks, texts and order (see :mod:`..project.deploy_plan`); warnings print as
``! Validation: ...`` and the deploy goes on (also under ``--ci``, where Tako prints none).

Ours, on purpose: a deploy that has no terminal (CI, ``--ci``) refuses to create the env's first
backup key unless ``--create-backup-key`` is given. Such a key would live only in the runner's
checkout of ``.tako/secrets.json``; unless that is committed back, every run makes a new key and
the server forgets the older ones, so older backups could no longer be restored.

``--dry-run`` contacts nothing and writes nothing: it prints the target servers, whether backups
are enabled and whether a backup key would be created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from .context import Globals, get_globals

if TYPE_CHECKING:
    from ..project.deploy_plan import DeployPlan
    from ..project.envkeys import KeyPrompts
    from .output import Output

deploy_app = typer.Typer(name="deploy", rich_markup_mode=None, add_completion=False,
                         help="Check the project and deploy an environment.")


@deploy_app.command()
def deploy(
    ctx: typer.Context,
    env: str | None = typer.Option(None, "--env", help="Environment to deploy (default: production)."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Do not ask for confirmation."),
    create_backup_key: bool = typer.Option(
        False, "--create-backup-key",
        help="Without a terminal, create the env's first backup key (commit .tako/secrets.json after)."),
) -> None:
    """Check the project and deploy an environment."""
    from ..project.deploy_plan import plan_deploy

    opts = get_globals(ctx)
    plan = plan_deploy(opts.config_path, env)
    for warning in plan.checks.warnings:
        opts.out.warning(f"Validation: {warning}")
    if opts.dry_run:
        _render_dry_run(opts, plan)
        return
    deploy_to_servers(opts, plan, assume_yes=yes or env is not None, create_backup_key=create_backup_key)


def deploy_to_servers(opts: Globals, plan: DeployPlan, *, assume_yes: bool,
                      create_backup_key: bool = False) -> None:
    """The remote part of a deploy: confirm a production deploy on a terminal (unless
    ``assume_yes`` or production is the only env), check the env key, create the env's backup key
    when backups are enabled and it has none (without a terminal only with ``create_backup_key``),
    then send ``deploy`` with the decrypted backup settings and the runtime (tako.toml's ``start``,
    one instance) to every server at once and print each finalize result.

    A failed post-deploy backup is reported, not an error. Raises Interrupted when the
    confirmation is declined, ConfigError when the env key or credentials cannot be opened or a
    backup key would be made without a terminal, and the server's error (one server) or
    ServersFailed (several) when a deploy call fails.
    """
    from ..errors import ConfigError
    from ..primitives.names import join_app_id
    from ..project.backup_keys import ensure_backup_keys
    from ..project.backup_wire import backup_settings_to_send
    from ..project.model import SECRETS_RELATIVE
    from ..remote import protocol
    from .prompts import can_prompt, key_prompts
    from .render import copy_report, finalize_line
    from .replies import parse_finalize
    from .targets import call_servers, raise_failures

    project, env = plan.project, plan.env
    out = opts.out
    _confirm_production(out, plan, assume_yes)
    out.heading("Deploy")
    out.line(f"{project.name} ({env})")
    prompts = key_prompts()
    _check_env_key(plan, prompts)
    if plan.backup_key_would_be_created and not create_backup_key and not can_prompt():
        raise ConfigError(backup_key_in_ci(env))
    if ensure_backup_keys(project, plan.secrets, env, prompts):
        out.hint(f"Created backup key {plan.secrets.envs[env].backup_keys[-1].id} for {env}; commit "
                 f"{SECRETS_RELATIVE} so every deploy sends it.")
    binding = backup_settings_to_send(project, plan.secrets, env, prompts)
    runtime = None if project.start is None else {"start": list(project.start), "instances": 1}
    payload = {"app": join_app_id(project.name, env),
               "backup": None if binding is None else binding.to_dict(), "runtime": runtime}
    count = len(plan.servers)
    spinner = "Deploying" if count == 1 else f"Deploying to {count} servers"
    outcomes = call_servers(plan.servers, protocol.DEPLOY, payload, parse_finalize, out=out, spinner=spinner)
    for outcome in outcomes:
        if outcome.error is None:
            out.line(finalize_line(outcome.name, outcome.data))
            copy_report(out, outcome.name, outcome.data.copy)
    raise_failures(outcomes, "Deploy failed on {failed} of {total} servers.")
    out.result("deploy", {"dry_run": False, "app": project.name, "environment": env,
                          "results": [{"server": o.name, "result": o.data.to_dict()} for o in outcomes],
                          "warnings": list(plan.checks.warnings)})


def backup_key_in_ci(env: str) -> str:
    """Why a deploy without a terminal does not create the env's first backup key, and what to do."""
    return (f"Backups are enabled for {env}, but .tako/secrets.json has no backup key yet, and this deploy "
            "has no terminal to confirm making one.\n"
            "A key made here would exist only in this checkout: unless .tako/secrets.json is committed back, "
            "the next run makes another one and older backups can no longer be restored.\n"
            f"Run `tako backups now --env {env}` (or deploy) where you keep the project, commit "
            ".tako/secrets.json, and deploy again; or pass --create-backup-key and commit the file after.")


def _check_env_key(plan: DeployPlan, prompts: KeyPrompts) -> None:
    """Tako checks the env key before anything else when the env has any encrypted value.
    Raises ConfigError (Tako's missing-key text)."""
    from ..project.secrets import open_env_key

    found = plan.secrets.envs.get(plan.env)
    if found is not None and next(found.encrypted_values(), None) is not None:
        open_env_key(plan.secrets, plan.env, prompts)


def _confirm_production(out: Output, plan: DeployPlan, assume_yes: bool) -> None:
    """Tako asks before deploying to production on a terminal when the project has another env
    it could have meant. Raises Interrupted when declined."""
    from ..errors import Interrupted
    from ..project.tako_toml import is_deployable_env
    from .context import PRODUCTION
    from .prompts import can_prompt, confirm

    several = sum(1 for name in plan.project.envs if is_deployable_env(name)) > 1
    if plan.env != PRODUCTION or assume_yes or not several or not can_prompt():
        return
    out.warning("You are deploying to production.")
    typer.echo("Pass --yes/-y to skip this prompt.", err=True)
    if not confirm("Deploy to production now?"):
        raise Interrupted("Deployment cancelled.")


def _render_dry_run(opts: Globals, plan: DeployPlan) -> None:
    out = opts.out
    project, env = plan.project, plan.env
    backup = plan.backup_storage
    out.heading("Deploy (dry run)")
    out.line(f"{project.name} ({env})")
    for server in plan.servers:
        out.line(f"Server {server.name}: {server.host} (management port {server.management_port})")
    for binding, resource in project.envs[env].storages.items():
        out.line(f"Storage {binding} -> {resource}")
    if backup is None:
        out.line("Backups: disabled")
    else:
        out.line(f"Backups: enabled, to {backup} (bucket {project.storages[backup].bucket})")
        if plan.backup_key_would_be_created:
            out.line("Backup key: would be created")
        else:
            out.line(f"Backup key: {plan.active_backup_key_id} (active)")
    out.line("Dry run: nothing was built, written or contacted.")
    out.result("deploy", {
        "dry_run": True, "app": project.name, "environment": env,
        "servers": [{"name": s.name, "host": s.host, "management_port": s.management_port}
                    for s in plan.servers],
        "storages": dict(project.envs[env].storages),
        "backup": {"enabled": backup is not None, "storage": backup,
                   "key_would_be_created": backup is not None and plan.backup_key_would_be_created},
        "warnings": list(plan.checks.warnings),
    })
