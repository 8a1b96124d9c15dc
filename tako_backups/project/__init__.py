"""A developer's project files: tako.toml, config.toml, secrets.json, env keys, deploy checks.

Modules (import what you need; nothing is imported here, so the CLI starts fast):

- ``tako_toml``: ``load_project(path, extensions=True) -> Project``, checked exactly as Tako checks
  tako.toml (``toml_parse``: its key and type checks, ``toml_serde``: how its errors read;
  ``toml_checks``, ``toml_rules``: its rules),
  ``resolve_config_path(-c value)``; the dataclasses live in ``model``, comment-keeping edits in
  ``toml_edit``, the ``storages add`` edit plan in ``storage_setup``. Name rules are in
  :mod:`tako_backups.primitives.names`.
- ``servers``: ``load_servers(path=None, extensions=True) -> Servers`` (Tako's ``[[servers]]``),
  ``servers_for_env(project, servers, env, only=None)``.
- ``backup_settings``: our ``tako-backups.toml`` (``load_backup_settings``,
  ``backup_extensions_for(project, env, secrets, prompts) -> BackupExtensions``);
  ``settings_edit``: its encrypted values (``store_extension_secrets``) and their deploy checks.
- ``key_bundle``: Tako's exported key bundle and ``tako secrets key import``.
- ``secrets``: ``load_secrets`` / ``save_secrets`` (Tako's exact format, 0600),
  ``open_env_key(secrets, env, prompts=None, create=False)``, storage credentials.
- ``envkeys``: env key files and passphrase keys (``KeyPrompts`` carries the CLI's questions).
- ``backup_keys``: ``ensure_backup_keys``, ``backup_keys_for``, ``backup_binding_for``.
- ``validation``: Tako's deploy-time ``storage_checks`` / ``require_storage_checks``;
  ``deploy_plan``: ``plan_deploy``.
- ``expiry``, ``paths``, ``files`` (crash-safe writes that name the file): small shared pieces.
"""
