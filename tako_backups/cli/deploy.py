"""``tako deploy``: run every deploy-time check, then deploy to the env's servers (the ``deploy``
RPC: backup settings, the runtime from tako.toml's ``start``, then the post-deploy backup).

``--dry-run`` contacts nothing and writes nothing: it prints the target servers, whether backups
are enabled and whether a backup key would be created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from .context import Globals, get_globals, resolve_env

if TYPE_CHECKING:
    from ..project.deploy_plan import DeployPlan
    from .output import Output

deploy_app = typer.Typer(name="deploy", rich_markup_mode=None, add_completion=False,
                         help="Check the project and deploy an environment.")


@deploy_app.command()
def deploy(
    ctx: typer.Context,
    env: str | None = typer.Option(None, "--env", help="Environment to deploy (default: production)."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Do not ask for confirmation."),
) -> None:
    """Check the project and deploy an environment."""
    from ..project.deploy_plan import plan_deploy

    opts = get_globals(ctx)
    explicit = env is not None
    env = resolve_env(opts, env)
    plan = plan_deploy(opts.config_path, env)
    for warning in plan.checks.warnings:
        opts.out.warning(f"Validation: {warning}")
    if opts.dry_run:
        _render_dry_run(opts, plan)
        return
    deploy_to_servers(opts, plan, assume_yes=yes or explicit)


def deploy_to_servers(opts: Globals, plan: DeployPlan, *, assume_yes: bool) -> None:
    """The remote part of a deploy: confirm a production deploy on a terminal (unless
    ``assume_yes``), create the env's backup key when backups are enabled and it has none, then send
    ``deploy`` with the decrypted backup settings and the runtime (tako.toml's ``start``, one
    instance) to every server at once and print each finalize result.

    A failed post-deploy backup is reported, not an error. Raises Interrupted when the
    confirmation is declined, ConfigError when the env key or credentials cannot be opened, and
    the server's error (one server) or ServersFailed (several) when a deploy call fails.
    """
    from ..primitives.names import join_app_id
    from ..project.backup_keys import backup_binding_for, ensure_backup_keys
    from ..remote import protocol
    from .prompts import key_prompts
    from .render import copy_report, finalize_line
    from .replies import parse_finalize
    from .targets import call_servers, raise_failures

    project, env = plan.project, plan.env
    out = opts.out
    _confirm_production(out, env, assume_yes)
    out.heading("Deploy")
    out.line(f"{project.name} ({env})")
    prompts = key_prompts()
    if ensure_backup_keys(project, plan.secrets, env, prompts):
        out.hint(f"Created backup key {plan.secrets.envs[env].backup_keys[-1].id} for {env}.")
    binding = backup_binding_for(project, plan.secrets, env, prompts)
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


def _confirm_production(out: Output, env: str, assume_yes: bool) -> None:
    """Tako asks before deploying to production on a terminal. Raises Interrupted when declined."""
    from ..errors import Interrupted
    from .context import PRODUCTION
    from .prompts import can_prompt, confirm

    if env != PRODUCTION or assume_yes or not can_prompt():
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
