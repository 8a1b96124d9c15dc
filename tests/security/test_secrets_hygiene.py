"""Secrets never leave their files: every `tako` command (as its own process), the tako-server log,
the app logs, every error reply and the reprs and messages of the objects that hold secrets are
scanned for the test's credentials and keys, in every form they could take (raw, base64, url-safe
base64, hex); the files that hold secrets are mode 0600 in 0700 folders."""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tako_backups.errors import TakoError
from tako_backups.models import BackupBinding, BackupKey, StorageBinding
from tako_backups.project.backup_keys import backup_keys_for
from tako_backups.project.envkeys import key_path
from tako_backups.project.secrets import load_secrets
from tako_backups.remote.protocol import RuntimeSettings
from tako_backups.server.state import AppState
from tako_backups.storage.s3 import S3Store
from tests.security.server_proc import launch
from tests.support.keys import make_key
from tests.support.s3_servers import MotoServer
from tests.support.tako_server import APP_PYTHON, NOTES_APP, ROOT, RunningServer, free_port

pytestmark = pytest.mark.slow

SECRET_KEY = "hygiene-SECRET-" + secrets.token_urlsafe(18)
ACCESS_KEY = "AKIAHYG" + secrets.token_hex(6).upper()
UPLOADS_SECRET = "uploads-SECRET-" + secrets.token_urlsafe(18)
UPLOADS_ACCESS = "AKIAUPL" + secrets.token_hex(6).upper()
APP_ENV_SECRET = "app-env-SECRET-" + secrets.token_urlsafe(18)


def forms(value: str | bytes) -> set[str]:
    """The ways a secret could be written: as is, base64 (padded or not, url-safe), hex."""
    raw = value.encode() if isinstance(value, str) else value
    found = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode(), raw.hex(),
             raw.hex().upper()}
    found |= {f.rstrip("=") for f in found}
    if isinstance(value, str):
        found.add(value)
    return {f for f in found if len(f) >= 16}


def leaks(text: str, secret_forms: dict[str, set[str]]) -> list[str]:
    return sorted(name for name, variants in secret_forms.items() if any(v in text for v in variants))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, moto_server: MotoServer) -> Iterator[dict[str, object]]:
    """A laptop (HOME with ~/.ssh, TAKO_HOME, an app folder) and a running tako-server."""
    root = tmp_path_factory.mktemp("hygiene")
    home, tako_home, app_dir = root / "home", root / "tako-home", root / "app"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    tako_home.mkdir()
    app_dir.mkdir()
    signer = make_key(home / ".ssh" / "id_ed25519", "dev@laptop")
    server = launch(root / "server" / "tako", signer)
    bucket = moto_server.lease_bucket()
    (tako_home / "config.toml").write_text(
        f'[servers.la]\nhost = "127.0.0.1"\nmanagement_port = {server.port}\n')
    (app_dir / "tako.toml").write_text("\n".join([
        'name = "notes"', f"start = {json.dumps([APP_PYTHON, str(NOTES_APP)])}", "",
        "[envs.production]", 'route = "notes.example.com"', 'servers = ["la"]',
        'backup = { storage = "backups" }', "", "[storages.backups]", f'bucket = "{bucket}"',
        f'endpoint = "{moto_server.endpoint}"', 'region = "us-east-1"', "force_path_style = true", ""]))
    yield {"home": home, "tako_home": tako_home, "app_dir": app_dir, "signer": signer, "server": server,
           "moto": moto_server, "bucket": bucket}
    server.terminate()
    moto_server.release_bucket(bucket)


def tako(world: dict[str, object], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "TAKO_SECRETS_PASSPHRASE")}
    env.update(HOME=str(world["home"]), TAKO_HOME=str(world["tako_home"]), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "tako_backups", *args], cwd=world["app_dir"], env=env,
                          capture_output=True, text=True, timeout=120)


def test_no_command_output_log_or_file_shows_a_secret(world: dict[str, object],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    app_dir, server = world["app_dir"], world["server"]
    assert isinstance(app_dir, Path) and isinstance(server, RunningServer)
    moto = world["moto"]
    assert isinstance(moto, MotoServer)
    runs: list[tuple[str, subprocess.CompletedProcess[str]]] = []

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = tako(world, *args)
        runs.append((" ".join(args), done))
        assert (done.returncode == 0) == ok, (args, done.stdout, done.stderr)
        return done

    run("storages", "credentials", "backups", "--env", "production", "--access-key-id", ACCESS_KEY,
        "--secret-access-key", SECRET_KEY, "--expires-on", "never")
    run("storages", "add", "uploads", "--env", "production", "--bucket", "uploads-bucket", "--endpoint",
        moto.endpoint, "--access-key-id", UPLOADS_ACCESS, "--secret-access-key", UPLOADS_SECRET,
        "--expires-on", "in 10 days")
    for extra in ((), ("--json",)):
        run(*extra, "storages", "list")
        run(*extra, "deploy", "--env", "production", "--dry-run")
    run("deploy", "--env", "production", "--yes", "--create-backup-key")
    now = run("--json", "backups", "now", "--env", "production")
    backup_id = json.loads(now.stdout)["results"][0]["backup"]["id"]
    for extra in ((), ("--json",), ("-v",)):
        run(*extra, "backups", "now", "--env", "production")
        run(*extra, "backups", "list", "--env", "production")
        run(*extra, "backups", "status", "--env", "production")
    run("backups", "download", backup_id, "--env", "production")
    run("--json", "backups", "download", backup_id, "--env", "production", "--output", "second.tar.zst.enc")
    run("backups", "restore", backup_id, "--env", "production", "--yes")
    run("-v", "backups", "restore", "b1700000000-NoSuchId", "--env", "production", "--yes", ok=False)
    run("--json", "backups", "download", "b1700000000-NoSuchId", "--env", "production", ok=False)
    toml = app_dir / "tako.toml"
    good = toml.read_text()
    toml.write_text(good.replace(moto.endpoint, f"http://127.0.0.1:{free_port()}"))
    run("-v", "backups", "now", "--env", "production", ok=False)  # the server cannot reach the bucket
    run("--json", "backups", "now", "--env", "production", ok=False)
    toml.write_text(good)
    config = Path(str(world["tako_home"])) / "config.toml"
    servers = config.read_text()
    config.write_text(servers.replace(str(server.port), str(free_port())))
    run("-v", "backups", "list", "--env", "production", ok=False)  # the server is down
    config.write_text(servers)

    monkeypatch.setenv("TAKO_HOME", str(world["tako_home"]))
    monkeypatch.delenv("TAKO_SECRETS_PASSPHRASE", raising=False)
    store = load_secrets(app_dir / ".tako" / "secrets.json")
    [backup_key] = backup_keys_for(store, "production")
    env_key_file = key_path(store.envs["production"].key_id)
    ssh_key = Path(str(world["home"])) / ".ssh" / "id_ed25519"
    server_key = server.data_dir / "state" / "server.key"
    secret_forms = {
        "s3 secret": forms(SECRET_KEY), "s3 access key id": forms(ACCESS_KEY),
        "uploads secret": forms(UPLOADS_SECRET), "uploads access key id": forms(UPLOADS_ACCESS),
        "backup key": forms(backup_key.key),
        "env key": forms(base64.b64decode(env_key_file.read_text())),
        "server key": forms(base64.b64decode(server_key.read_text())),
        "ssh private key": {line for line in ssh_key.read_text().splitlines()[1:-1] if len(line) >= 16},
    }

    assert leaks(f"x{base64.b64encode(backup_key.key).decode()}y {SECRET_KEY}", secret_forms) == [
        "backup key", "s3 secret"]
    if os.environ.get("TAKO_TEST_SHOW_RUNS"):
        for command, done in runs:
            print(f"$ tako {command}\n{done.stdout}{done.stderr}")
    assert len(runs) == 25 and sum(done.returncode == 0 for _, done in runs) == 20  # docs/RELIABILITY.md
    assert len(secret_forms) == 8
    for command, done in runs:
        assert leaks(done.stdout + done.stderr, secret_forms) == [], command
        assert "Traceback" not in done.stdout + done.stderr, command
    assert leaks(server.log_path.read_text(errors="replace"), secret_forms) == []
    holders = {app_dir / ".tako" / "secrets.json", env_key_file, ssh_key, server_key}
    scanned = 0
    for folder in (app_dir, Path(str(world["tako_home"])), server.data_dir, Path(str(world["home"]))):
        for path in folder.rglob("*"):
            if path.is_file() and path not in holders and not path.name.endswith("-wal"):
                scanned += 1
                assert leaks(path.read_bytes().decode("latin-1"), secret_forms) == [], path
    assert scanned >= 10
    assert list((server.data_dir / "logs").glob("*.log")), "the app wrote no log to scan"
    stored = server.data_dir / "state" / "apps" / "notes.production.enc"
    assert stored.exists() and leaks(stored.read_bytes().decode("latin-1"), secret_forms) == []

    modes = {path: stat.S_IMODE(path.stat().st_mode) for path in (
        app_dir / ".tako" / "secrets.json", env_key_file, server_key, stored,
        server.data_dir / "management-authorized-keys")}
    assert modes == dict.fromkeys(modes, 0o600)
    folders = {path: stat.S_IMODE(path.stat().st_mode) for path in (
        env_key_file.parent, server.data_dir / "state", server.data_dir / "state" / "apps",
        server.data_dir / "tmp")}
    assert folders == dict.fromkeys(folders, 0o700)


def test_objects_holding_secrets_never_show_them() -> None:
    key = BackupKey("backup-key-" + secrets.token_hex(8), os.urandom(32))
    storage = StorageBinding(bucket="b", endpoint="http://127.0.0.1:9", region="us-east-1",
                             access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY, force_path_style=True)
    settings = BackupBinding(storage=storage, backup_keys=[key], retention_days=30)
    runtime = RuntimeSettings(start=("app",), instances=1, env={"DATABASE_PASSWORD": APP_ENV_SECRET})
    state = AppState(backup=settings, runtime=runtime)
    store = S3Store.from_binding(storage)
    secret_forms = {"s3 secret": forms(SECRET_KEY), "backup key": forms(key.key),
                    "app env": forms(APP_ENV_SECRET)}
    for obj in (key, storage, settings, runtime, state, store):
        assert leaks(repr(obj) + str(obj), secret_forms) == [], type(obj).__name__
    failures: list[BaseException] = []
    for attempt in (
        lambda: BackupBinding.from_dict({**settings.to_dict(), "retention_days": 0}),
        lambda: BackupKey.from_dict({"id": key.id, "key_base64": base64.b64encode(key.key[:31]).decode()}),
        lambda: StorageBinding.from_dict({**storage.to_dict(), "provider": "gcs"}),
        lambda: StorageBinding.from_dict({**storage.to_dict(), "secret_access_key": 7}),
        lambda: S3Store.from_binding(StorageBinding(bucket="b", endpoint="ftp://x", region="r",
                                                    access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)),
        lambda: RuntimeSettings.from_dict({"start": ["a"], "instances": 1,
                                           "env": {"BAD NAME": APP_ENV_SECRET}}),
        lambda: store.get_bytes("missing"),
    ):
        with pytest.raises(TakoError) as failed:
            attempt()
        failures.append(failed.value)
    for exc in failures:
        assert leaks(str(exc) + repr(exc), secret_forms) == [], str(exc)
