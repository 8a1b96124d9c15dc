"""The server data root (default ``/opt/tako``) and where each thing lives in it.

```
{root}/config.json                     optional: {"server_name": "la"}
{root}/management-authorized-keys      OpenSSH authorized_keys lines (0600)
{root}/identity.key, identity.pub      the server's SSH identity (Ed25519, key 0600), as Tako's
{root}/apps/{app}/{env}/data/          the live data (0710): app/ (TAKO_DATA_DIR) and tako/
{root}/state/                          server.key and encrypted per-app settings (0700)
{root}/state/seen-nonces               nonces of accepted signed requests, while they could replay
{root}/state/app-ids.json              each app's own uid/gid when the server runs as root
{root}/tls/cert.pem, key.pem           the TLS identity of `serve --tls` (key 0600), never rotated
{root}/tmp/backups/{id}/               SQLite snapshots while a backup runs
{root}/tmp/restore/{app}.{env}.{id}.*/ staging of one restore or undo (tree/, aside/, record.json)
                                       or restore preview
{root}/kept/{app}.{env}/               the tree the last restore replaced (aside/) and its
                                       record.json, until its upload verified and its grace ended
{root}/tmp/drills/                     scratch folders of restore drills
{root}/tmp/uploads/                    the parts of running uploads, in unnamed files
{root}/logs/{app}.{env}.log            app process output (0700; written through the server's fd)
```

When the server runs as root (``users`` set, see :mod:`.app_users`), owners and modes keep every
app to its own data: the root, ``apps/`` and ``apps/{app}/`` are ``root:<app-user group> 0710``,
``apps/{app}/{env}/`` and ``data/`` ``root:<the app's gid> 0710``, ``app/`` and ``tako/`` the app's
(Tako's workflow worker, part of the app, writes ``tako/workflows.sqlite``); everything else at
the top is root's alone.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import ConfigError
from ..primitives.atomic_files import os_reason
from ..primitives.names import join_app_id
from .app_users import AppAccount, AppUsers
from .ownership import chown_tree, open_folder, set_owner

__all__ = ["DEFAULT_DATA_DIR", "DATA_DIR_MODE", "ServerPaths"]

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = "/opt/tako"
DATA_DIR_MODE = 0o710
PASS_ONLY_MODE = 0o710  # with users: its group may pass through, not list
PRIVATE_MODE = 0o700


@dataclass(frozen=True)
class ServerPaths:
    """Where each thing is under ``root``; with ``users``, also who owns it (server run as root)."""

    root: Path
    users: AppUsers | None = None

    def run_apps_as(self, account: AppAccount) -> ServerPaths:
        """These paths, with each app owning its data under its own uid (``state/app-ids.json``)
        and ``account``'s group passing the data root."""
        return replace(self, users=AppUsers(self.state_dir / "app-ids.json", account))

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

    def new_restore_staging(self, name: str, env: str, what: str) -> Path:
        """A fresh path (not yet made) for staging a restore, preview or undo of ``name``/``env``:
        ``tmp/restore/{name}.{env}.{what}.{8 hex}``. The app is the first two dot-separated parts
        (:meth:`app_of_staging`), which is how recovery finds an interrupted restore's data dir."""
        self.restore_work.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.restore_work / f"{name}.{env}.{what}.{secrets.token_hex(4)}"

    @staticmethod
    def app_of_staging(staging_name: str) -> tuple[str, str] | None:
        """``(name, env)`` as written by :meth:`new_restore_staging`, unchecked; None when the
        name has too few parts."""
        parts = staging_name.split(".")
        return (parts[0], parts[1]) if len(parts) >= 3 else None

    @property
    def upload_spool(self) -> Path:
        """Where uploads keep their parts, in unnamed files (see
        :class:`~..storage.s3_multipart.SpooledPart`)."""
        return self.root / "tmp" / "uploads"

    @property
    def drill_work(self) -> Path:
        return self.root / "tmp" / "drills"

    def app_dir(self, name: str, env: str) -> Path:
        return self.root / "apps" / name / env

    def data_dir(self, name: str, env: str) -> Path:
        return self.app_dir(name, env) / "data"

    def prepare(self) -> None:
        """Create the root's folders (private ones 0700); with ``users``, make the root and
        ``apps/`` passable by the app-user group only and the keys file 0600.

        Raises ConfigError when that fails.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / "apps").mkdir(exist_ok=True)
            for private in (self.state_dir, self.root / "tmp", self.backup_work, self.restore_work,
                            self.upload_spool, self.drill_work, self.logs_dir, self.root / "kept"):
                private.mkdir(mode=PRIVATE_MODE, parents=True, exist_ok=True)
                os.chmod(private, PRIVATE_MODE)
            if self.users is not None:
                shared = self.users.account.gid
                with open_folder(self.root) as root:
                    set_owner(root, 0, shared, PASS_ONLY_MODE)
                    with open_folder("apps", root) as apps:
                        set_owner(apps, 0, shared, PASS_ONLY_MODE)
                if self.authorized_keys.exists():
                    os.chmod(self.authorized_keys, 0o600)
        except OSError as exc:
            raise ConfigError(f"Cannot prepare the server data dir {self.root}: {os_reason(exc)}.") from None

    def ensure_data_dir(self, name: str, env: str) -> Path:
        """Create ``apps/{name}/{env}/data/{app,tako}`` (data 0710) and return the data dir; with
        ``users``, give them their owners (see the module doc). An ``app/`` or ``tako/`` that is
        not the app's yet (data from before, or from another uid) is handed over whole.

        Raises ConfigError when the folders cannot be made or given their owners.
        """
        data = self.data_dir(name, env)
        try:
            data.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
            os.chmod(data, DATA_DIR_MODE)
            for part in ("app", "tako"):
                (data / part).mkdir(mode=0o750, exist_ok=True)
            if self.users is not None:
                self._set_owners(name, env)
        except OSError as exc:
            raise ConfigError(f"Cannot create the data dir {data}: {os_reason(exc)}.") from None
        return data

    def own_restored_tree(self, tree: Path, name: str, env: str) -> None:
        """Give a restored data tree (staged, not yet swapped in) the owners and modes of a live
        one: the tree 0710 (``root:<the app's gid>`` with ``users``), and with ``users`` every
        folder and file under ``app/`` and ``tako/`` the app's.

        Raises OSError from the filesystem and ConfigError when the app's uid cannot be had.
        """
        if self.users is None:
            os.chmod(tree, DATA_DIR_MODE)
            return
        who = self.users.identity(join_app_id(name, env))
        with open_folder(tree) as top:
            set_owner(top, 0, who.gid, DATA_DIR_MODE)
            for part in ("app", "tako"):
                with open_folder(part, top) as sub:
                    chown_tree(sub, who.uid, who.gid)

    def _set_owners(self, name: str, env: str) -> None:
        assert self.users is not None
        who = self.users.identity(join_app_id(name, env))
        shared = self.users.account.gid
        with open_folder(self.root) as root, open_folder("apps", root) as apps, \
                open_folder(name, apps) as app_name, open_folder(env, app_name) as app_env, \
                open_folder("data", app_env) as data:
            set_owner(apps, 0, shared, PASS_ONLY_MODE)
            set_owner(app_name, 0, shared, PASS_ONLY_MODE)
            set_owner(app_env, 0, who.gid, PASS_ONLY_MODE)
            set_owner(data, 0, who.gid, DATA_DIR_MODE)
            for part in ("app", "tako"):
                with open_folder(part, data) as sub:
                    st = os.fstat(sub)
                    if (st.st_uid, st.st_gid) != (who.uid, who.gid):
                        skipped = chown_tree(sub, who.uid, who.gid)
                        log.info("handed %s/%s of %s/%s to uid %d%s", data, part, name, env, who.uid,
                                 f" ({skipped} hard-linked files left alone)" if skipped else "")

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
