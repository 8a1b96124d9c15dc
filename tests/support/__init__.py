"""What many test suites (and the benchmark) share, one home each:

- ``dataset``: the deterministic test data generator (SQLite in WAL mode, Tako's databases,
  uploads, a symlink; a few MB to several GB).
- ``s3_servers``: real S3 servers on 127.0.0.1 (SeaweedFS, moto) and leased buckets.
- ``tako_server``: a real ``tako-server serve`` subprocess (launch, restart, authorize, app pids).
- ``developer``: a developer's HOME, TAKO_HOME and app folder, running the ``tako`` CLI.
- ``asgi``: a synchronous in-process client for the server's ASGI app.
- ``keys``: SSH signing keys (ssh-keygen) and backup keys; fixture names keep one meaning
  everywhere (``signer`` an SSH key, ``key`` a backup key).
- ``backups``: a core backup with the suite's fixed app, env and server.
- ``waiting``: ``wait_for`` with a deadline and a message.
- ``sqlite_checks``: ``integrity()`` of a SQLite file, read-only.
- ``webhooks``: a webhook receiver for the notification tests.
"""
