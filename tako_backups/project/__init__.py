"""A developer's project files: tako.toml, config.toml, secrets.json, deploy checks."""
