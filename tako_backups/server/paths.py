"""The server data root (default ``/opt/tako``) and where each thing lives in it.

```
{root}/config.json                     optional: {"server_name": "la"}
{root}/management-authorized-keys      OpenSSH authorized_keys lines (0600)
{root}/apps/{app}/{env}/data/          the live data (0710): app/ (TAKO_DATA_DIR) and tako/
{root}/state/                          server.key and encrypted per-app settings (0700)
{root}/state/seen-nonces               nonces of accepted signed requests, while they could replay
{root}/tls/cert.pem, key.pem           the TLS identity of `serve --tls` (key 0600), never rotated
{root}/tmp/backups/{id}/               SQLite snapshots while a backup runs
{root}/tmp/restore/{app}.{env}.{id}.*/ staging of one restore or undo (tree/, aside/, record.json)
                                       or restore preview
{root}/kept/{app}.{env}/               the tree the last restore replaced (aside/) and its
                                       record.json, until its upload verified and its grace ended
{root}/tmp/drills/                     scratch folders of restore drills
{root}/logs/{app}.{env}.log            app process output
```
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

__all__ = ["DEFAULT_DATA_DIR", "DATA_DIR_MODE", "ServerPaths"]

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = "/opt/tako"
DATA_DIR_MODE = 0o710
PRIVATE_MODE = 0o700


@dataclass(frozen=True)
class ServerPaths:
    root: Path

    @property
    def config_file(self) -> Path:
        return self.root / "config.json"

    @property
    def authorized_keys(self) -> Path:
        return self.root / "management-authorized-keys"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def seen_nonces(self) -> Path:
        return self.state_dir / "seen-nonces"

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def backup_work(self) -> Path:
        return self.root / "tmp" / "backups"

    @property
    def restore_work(self) -> Path:
        return self.root / "tmp" / "restore"

    @property
    def drill_work(self) -> Path:
        return self.root / "tmp" / "drills"

    def app_dir(self, name: str, env: str) -> Path:
        return self.root / "apps" / name / env

    def data_dir(self, name: str, env: str) -> Path:
        return self.app_dir(name, env) / "data"

    def prepare(self) -> None:
        """Create the root's folders (private ones 0700). Raises ConfigError when that fails."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / "apps").mkdir(exist_ok=True)
            for private in (self.state_dir, self.root / "tmp", self.backup_work, self.restore_work,
                            self.drill_work, self.root / "kept"):
                private.mkdir(mode=PRIVATE_MODE, parents=True, exist_ok=True)
                os.chmod(private, PRIVATE_MODE)
        except OSError as exc:
            raise ConfigError(f"Cannot prepare the server data dir {self.root}: {exc.strerror}.") from None

    def ensure_data_dir(self, name: str, env: str) -> Path:
        """Create ``apps/{name}/{env}/data/{app,tako}`` (data 0710) and return the data dir.

        Raises ConfigError when the folders cannot be made.
        """
        data = self.data_dir(name, env)
        try:
            data.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
            os.chmod(data, DATA_DIR_MODE)
            for part in ("app", "tako"):
                (data / part).mkdir(mode=0o750, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"Cannot create the data dir {data}: {exc.strerror}.") from None
        return data

    def server_name(self) -> str:
        """``server_name`` from ``config.json``, else the host name. Raises ConfigError."""
        try:
            text = self.config_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return socket.gethostname()
        except OSError as exc:
            raise ConfigError(f"Cannot read {self.config_file}: {exc.strerror}.") from None
        try:
            config = json.loads(text)
        except ValueError:
            raise ConfigError(f"{self.config_file} is not valid JSON.") from None
        if not isinstance(config, dict):
            raise ConfigError(f"{self.config_file} must hold a JSON object.")
        name = config.get("server_name")
        if name is None:
            return socket.gethostname()
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{self.config_file} field 'server_name' must be a non-empty string.")
        return name.strip()
