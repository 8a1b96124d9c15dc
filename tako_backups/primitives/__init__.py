"""The lowest layer: rules and helpers every other package shares, with one home each.

- ``names``: app, environment, storage, server-segment and key-id rules with Tako's exact
  message texts; the bucket-prefix segment sanitizer; the server's ``{name}/{env}`` split.
- ``start_command``: an app's start command (argv) and its environment variable names.
- ``atomic_files``: crash-safe writes (temp file in the same folder, fsync, rename), exclusive
  creation, folder fsync and never-overwrite placement.
- ``json_shapes``: the one checker of a JSON object's fields and their types.
- ``streams``: the ``Sink`` protocol (anything with ``write``).
- ``text``: a user-supplied name or id made printable on one line for a message.

Modules here import only the standard library and :mod:`tako_backups.errors` (an import-linter
contract checks it), so every layer may import them.
"""
