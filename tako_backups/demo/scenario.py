"""The demo's steps: set up a local S3, a tako-server and a project, then run the real commands."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..errors import ConfigError, TakoError
from .seaweed import LOOPBACK, LocalS3, require_free, start_local_s3
from .sshkey import make_key

APP, ENV, SERVER, RESOURCE, BUCKET = "notes", "production", "demo", "demo-s3", "tako-demo"
ID_RE = re.compile(r"\bb[0-9]+-[A-Za-z0-9_-]{8}\b")


def demo_files(s3_endpoint: str, server_port: int, key_file: Path, start: list[str]) -> tuple[str, str]:
    """The demo's ``config.toml`` and ``tako.toml``, in the forms Tako reads: ``[[servers]]``
    (``management_port`` is ours; Tako ignores it) and only Tako's keys. One thing Tako would
    refuse: the local SeaweedFS endpoint is plain ``http://127.0.0.1`` (our loopback extension)."""
    config_toml = (f'[[servers]]\nname = "{SERVER}"\nhost = "{LOOPBACK}"\nmanagement_port = {server_port}\n'
                   f"key_path = {json.dumps(str(key_file))}\n")
    tako_toml = (f"# The demo app: examples/notes-app keeps writing SQLite rows and uploads.\n"
                 f'name = "{APP}"\nstart = {json.dumps(start)}\n\n'
                 f'[envs.{ENV}]\nroute = "{APP}.localhost"\nservers = ["{SERVER}"]\n'
                 f'backup = {{ storage = "{RESOURCE}" }}\n\n'
                 f'[storages.{RESOURCE}]\nbucket = "{BUCKET}"\nendpoint = "{s3_endpoint}"\n'
                 f'region = "us-east-1"\nforce_path_style = true\n')
    return config_toml, tako_toml


class Reporter(Protocol):
    def heading(self, text: str) -> None: ...
    def line(self, text: str = "") -> None: ...


@dataclass
class Demo:
    root: Path
    s3_port: int
    server_port: int
    out: Reporter
    s3: LocalS3 | None = None
    server: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def app_dir(self) -> Path:
        return self.root / "app"

    @property
    def data_root(self) -> Path:
        return self.root / "server" / "apps" / APP / ENV / "data"

    # --- setup -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start SeaweedFS and tako-server and write the project. Raises ConfigError/TakoError."""
        require_free(self.server_port, "tako-server", "--server-port")
        notes_app = notes_app_path()
        self.out.heading("Setting up (loopback only)")
        self.s3 = start_local_s3(self.root / "s3", self.s3_port, BUCKET)
        self.out.line(f"SeaweedFS S3 at {self.s3.endpoint} (auth on, telemetry off)")
        home = self.root / "home"
        home.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "TAKO_HOME": str(home), "HOME": str(home), "NO_COLOR": "1"}
        self.env.pop("SSH_AUTH_SOCK", None)
        self.env.pop("TAKO_SECRETS_PASSPHRASE", None)
        pub = make_key(home / ".ssh" / "id_ed25519")
        server_dir = self.root / "server"
        server_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:  # the notes app will run as a uid of its own: let it pass (not list)
            self.root.chmod(stat.S_IMODE(self.root.stat().st_mode) | stat.S_IXOTH)
            notes_app = readable_copy(notes_app, self.root / "notes-app")
        (server_dir / "config.json").write_text(json.dumps({"server_name": SERVER}) + "\n")
        self.step(["tako-server", "authorize-key", str(pub), "--data-dir", str(server_dir)])
        log = open(self.root / "tako-server.log", "ab")  # noqa: SIM115 - the child keeps it
        self.server = subprocess.Popen(
            [sys.executable, "-m", "tako_backups.server.cli", "serve", "--data-dir", str(server_dir),
             "--host", LOOPBACK, "--port", str(self.server_port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
            start_new_session=True)
        log.close()
        self._wait_for_server()
        self.out.line(f"tako-server at http://{LOOPBACK}:{self.server_port} (data in {server_dir})")
        config_toml, tako_toml = demo_files(self.s3.endpoint, self.server_port, home / ".ssh" / "id_ed25519",
                                            [app_python(), str(notes_app)])
        (home / "config.toml").write_text(config_toml)
        self.app_dir.mkdir(exist_ok=True)
        (self.app_dir / "tako.toml").write_text(tako_toml)
        self.out.line(f"Project in {self.app_dir} (tako.toml, config.toml, SSH key)")

    def _wait_for_server(self) -> None:
        import httpx

        deadline = time.monotonic() + 30
        url = f"http://{LOOPBACK}:{self.server_port}/rpc"
        while time.monotonic() < deadline:
            assert self.server is not None
            if self.server.poll() is not None:
                raise TakoError(f"tako-server exited with code {self.server.returncode}; "
                                f"see {self.root / 'tako-server.log'}.")
            try:
                hello = {"command": "hello", "protocol_version": 0}
                if httpx.post(url, json=hello, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TakoError(f"tako-server did not answer on {url} within 30 s.")

    # --- the commands ------------------------------------------------------------------------

    def step(self, argv: list[str], shown: list[str] | None = None, check: bool = True) -> str:
        """Print ``$ <command>`` as a user would type it, run it, echo and return its output."""
        self.out.line("")
        self.out.line("$ " + shlex.join(shown or argv))
        if argv[0] == "tako":
            cmd = [sys.executable, "-m", "tako_backups", *argv[1:]]
        else:
            cmd = [sys.executable, "-m", "tako_backups.server.cli", *argv[1:]]
        done = subprocess.run(cmd, cwd=self.app_dir if self.app_dir.exists() else self.root,
                              env=self.env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        for text in (done.stdout, done.stderr):
            for line in text.rstrip("\n").splitlines():
                self.out.line("  " + line)
        if check and done.returncode != 0:
            raise TakoError(f"Demo step failed (exit {done.returncode}): {shlex.join(shown or argv)}")
        return done.stdout + done.stderr

    def run(self) -> None:
        """deploy → now → list → status → download → verify → damage → restore → data back."""
        s3 = self.s3
        assert s3 is not None
        self.out.line("")
        self.out.heading("Storage credentials (kept encrypted in .tako/secrets.json)")
        self.step(["tako", "storages", "credentials", RESOURCE, "--env", ENV,
                   "--access-key-id", s3.access_key, "--secret-access-key", s3.secret_key],
                  shown=["tako", "storages", "credentials", RESOURCE, "--env", ENV,
                         "--access-key-id", s3.access_key, "--secret-access-key", "********"])
        self.out.line("")
        self.out.heading("Deploy (starts the notes app, takes the post-deploy backup)")
        self.step(["tako", "deploy", "--env", ENV, "--create-backup-key"])
        self._wait_for_rows(40)
        self.out.line("")
        self.out.heading("Back up, list, status")
        made = self.step(["tako", "backups", "now", "--env", ENV])
        backup_id = ID_RE.findall(made)[-1]
        before = self.counts()
        self.out.line(f"  (the app keeps writing: {before[0]} notes, {before[1]} uploads so far)")
        self.step(["tako", "backups", "list", "--env", ENV])
        self.step(["tako", "backups", "status", "--env", ENV])
        self.out.line("")
        self.out.heading("Download and verify offline (no server needed)")
        archive = self.root / "downloads" / f"{backup_id}.tar.zst.enc"
        archive.parent.mkdir(exist_ok=True)
        self.step(["tako", "backups", "download", backup_id, "--env", ENV, "--output", str(archive)])
        self.step(["tako", "backups", "verify", str(archive), "--env", ENV])
        self.out.line("")
        self.out.heading("Damage the live data")
        self.damage()
        self.out.line("")
        self.out.heading("Restore (stops the app, swaps the data, starts it again)")
        self.step(["tako", "backups", "restore", backup_id, "--env", ENV, "--yes"])
        time.sleep(0.5)
        notes, uploads = self.counts()
        self.out.line("")
        self.out.line(f"Data back: {notes} notes, {uploads} uploads in {self.data_root / 'app'} "
                      f"(the backup held about {before[0]}; the app is writing again).")
        self.out.line("Restored tree:")
        for line in tree_lines(self.data_root):
            self.out.line("  " + line)

    def counts(self) -> tuple[int, int]:
        app = self.data_root / "app"
        try:
            conn = sqlite3.connect(f"file:{app / 'notes.db'}?mode=ro", uri=True, timeout=10)
            try:
                notes = conn.execute("SELECT count(*) FROM notes").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.Error:
            notes = 0
        uploads = len(list((app / "uploads").glob("*.txt"))) if (app / "uploads").exists() else 0
        return int(notes), uploads

    def _wait_for_rows(self, n: int) -> None:
        deadline = time.monotonic() + 20
        while self.counts()[0] < n and time.monotonic() < deadline:
            time.sleep(0.2)

    def damage(self) -> None:
        app = self.data_root / "app"
        self.out.line(f"$ rm -r {app / 'uploads'} && sqlite3 {app / 'notes.db'} 'DELETE FROM notes'")
        uploads = len(list((app / "uploads").glob("*.txt"))) if (app / "uploads").exists() else 0
        shutil.rmtree(app / "uploads", ignore_errors=True)
        conn = sqlite3.connect(app / "notes.db", timeout=10)
        notes = conn.execute("DELETE FROM notes").rowcount
        conn.commit()
        conn.close()
        # the app keeps writing: say what was deleted, not a count that is stale at once
        self.out.line(f"  deleted {notes} notes and {uploads} uploads")

    # --- teardown ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop tako-server (it stops the app) and SeaweedFS."""
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.server.pid, signal.SIGKILL)
                self.server.wait(timeout=10)
        if self.s3 is not None:
            self.s3.stop()

    def keep_message(self) -> list[str]:
        pids = " ".join(str(p.pid) for p in (self.server, self.s3.process if self.s3 else None) if p)
        return [
            "The demo keeps running. Try it yourself:",
            f"  export TAKO_HOME={self.root / 'home'}",
            f"  cd {self.app_dir}",
            f"  tako backups list --env {ENV}",
            f"Stop it with: kill {pids} && rm -rf {self.root}",
        ]


def app_python() -> str:
    """The Python for the notes app: this one, or as root the system's ``python3`` (tako-server as
    root runs the app as a uid of its own, which may not reach this interpreter: a pyenv under
    /root, say)."""
    if os.geteuid() == 0:
        return shutil.which("python3", path=os.defpath) or sys.executable
    return sys.executable


def readable_copy(source: Path, folder: Path) -> Path:
    """``source`` copied into ``folder`` (made if missing), both readable by every uid: the notes
    app for an app uid of its own, which may not pass the folders of the checkout it comes from
    (`mktemp -d`, a home under /root)."""
    folder.mkdir(mode=0o755, exist_ok=True)
    folder.chmod(0o755)
    copy = folder / source.name
    shutil.copyfile(source, copy)
    copy.chmod(0o644)
    return copy


def notes_app_path() -> Path:
    """examples/notes-app/app.py of this source checkout. Raises ConfigError when absent."""
    path = Path(__file__).resolve().parents[2] / "examples" / "notes-app" / "app.py"
    if not path.exists():
        raise ConfigError("tako demo needs the examples/ folder of a source checkout "
                          "(git clone the project and pip install -e '.[local]').")
    return path


def tree_lines(root: Path, limit: int = 12) -> list[str]:
    lines = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if len(rel.parts) > 2:
            continue
        size = "" if path.is_dir() else f"  {path.stat().st_size} bytes"
        lines.append(f"{rel}{'/' if path.is_dir() else ''}{size}")
    more = len(lines) - limit
    return lines[:limit] + ([f"... and {more} more"] if more > 0 else [])
