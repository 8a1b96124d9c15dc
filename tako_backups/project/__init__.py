"""A developer's project files: tako.toml, config.toml, secrets.json, env keys, deploy checks.

Modules (import what you need; nothing is imported here, so the CLI starts fast):

- ``tako_toml``: ``load_project(path) -> Project`` (validated ``[envs.*]`` / ``[storages.*]``),
  ``resolve_config_path(-c value)``; the dataclasses live in ``model``, the rules in
  ``toml_rules``, comment-keeping edits in ``toml_edit``, the ``storages add`` edit plan in
  ``storage_setup``. Name rules are in :mod:`tako_backups.primitives.names`.
- ``servers``: ``load_servers() -> Servers``, ``servers_for_env(project, servers, env, only=None)``.
- ``secrets``: ``load_secrets`` / ``save_secrets`` (Tako's exact format, 0600),
  ``open_env_key(secrets, env, prompts=None, create=False)``, storage credentials.
- ``envkeys``: env key files and passphrase keys (``KeyPrompts`` carries the CLI's questions).
- ``backup_keys``: ``ensure_backup_keys``, ``backup_keys_for``, ``backup_binding_for``.
- ``validation``: ``deploy_checks`` / ``require_deploy_checks``; ``deploy_plan``: ``plan_deploy``.
- ``expiry``, ``paths``, ``files`` (crash-safe writes that name the file): small shared pieces.
"""
