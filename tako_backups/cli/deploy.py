"""``tako deploy``: run every deploy-time check, then deploy to the env's servers.

``--dry-run`` contacts nothing and writes nothing: it prints the target servers, whether backups
are enabled and whether a backup key would be created.
"""

from __future__ import annotations

from typing import Any

import typer

from .context import Globals, get_globals, resolve_env

deploy_app = typer.Typer(name="deploy", help="Check the project and deploy an environment.")


@deploy_app.command()
def deploy(
    ctx: typer.Context,
    env: str | None = typer.Option(None, "--env", help="Environment to deploy (default: production)."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Do not ask for confirmation."),
) -> None:
    """Check the project and deploy an environment."""
    from ..project.deploy_plan import plan_deploy

    g = get_globals(ctx)
    env = resolve_env(g, env)
    plan = plan_deploy(g.config_path, env)
    for warning in plan.checks.warnings:
        g.out.warning(f"Validation: {warning}")
    if g.dry_run:
        _render_dry_run(g, plan)
        return
    deploy_to_servers(g, plan, assume_yes=yes)


def deploy_to_servers(g: Globals, plan: Any, *, assume_yes: bool) -> None:
    """The remote part of a deploy (one call, supplied with tako-server support).

    It will create the env's backup key when needed (``ensure_backup_keys``), build the decrypted
    settings (``backup_binding_for``) and send them to each of ``plan.servers``. Until then it
    raises TakoError.
    """
    from ..errors import TakoError

    raise TakoError("tako deploy needs tako-server support (coming).")


def _render_dry_run(g: Globals, plan: Any) -> None:
    out = g.out
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
