"""`tako-server authorize-key`, serve's startup errors, encrypted settings and crash recovery."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from tako_backups.errors import ConfigError
from tako_backups.remote.protocol import RuntimeSettings
from tako_backups.remote.signing import FileSigner
from tako_backups.server.cli import main
from tako_backups.server.paths import ServerPaths
from tako_backups.server.recovery import recover_interrupted_restores
from tako_backups.server.state import AppState, StateStore
from tests.server.helpers import APP, binding
from tests.support.tako_server import SERVER, server_env


def test_authorize_key_appends_once(tmp_path: Path, signer: FileSigner, stranger: FileSigner,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "tako"
    pub = Path(f"{signer.path}.pub")
    assert main(["authorize-key", str(pub), "--data-dir", str(data_dir)]) == 0
    keys_file = data_dir / "management-authorized-keys"
    assert capsys.readouterr().out == (
        f"Authorized ssh-ed25519 key {signer.fingerprint} (dev@laptop) in {keys_file}.\n")
    assert keys_file.read_text() == pub.read_text().strip() + "\n"
    assert keys_file.stat().st_mode & 0o777 == 0o600
    assert main(["authorize-key", str(pub), "--data-dir", str(data_dir)]) == 0
    assert capsys.readouterr().out == f"Key {signer.fingerprint} is already authorized in {keys_file}.\n"
    assert main(["authorize-key", f"{stranger.path}.pub", "--data-dir", str(data_dir)]) == 0
    lines = keys_file.read_text().splitlines()
    assert lines == [pub.read_text().strip(), Path(f"{stranger.path}.pub").read_text().strip()]


@pytest.mark.parametrize(("content", "message"), [
    (None, "Cannot read public key file {path}: No such file or directory."),
    ("", "{path} must hold exactly one public key line (found 0)."),
    ("ssh-dss AAAAB3NzaC1kc3MAAACBAP== x\n", "SSH key type ssh-dss is not supported; "
     "use Ed25519, RSA or ECDSA (nistp256/384/521)."),
    ("ssh-ed25519 AAAA a\nssh-ed25519 AAAA b\n", "{path} must hold exactly one public key line (found 2)."),
])
def test_authorize_key_refuses_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         content: str | None, message: str) -> None:
    path = tmp_path / "key.pub"
    if content is not None:
        path.write_text(content)
    assert main(["authorize-key", str(path), "--data-dir", str(tmp_path / "tako")]) == 1
    assert capsys.readouterr().err == f"tako-server: {message.format(path=path)}\n"
    assert not (tmp_path / "tako" / "management-authorized-keys").exists()


def test_authorize_key_refuses_a_private_key(tmp_path: Path, signer: FileSigner,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["authorize-key", str(signer.path), "--data-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith("tako-server: ")
    assert not (tmp_path / "management-authorized-keys").exists()


def test_server_name_from_config_json(tmp_path: Path) -> None:
    paths = ServerPaths(tmp_path)
    assert paths.server_name() == socket.gethostname()
    (tmp_path / "config.json").write_text(json.dumps({"server_name": " la.1 "}))
    assert paths.server_name() == "la.1"
    (tmp_path / "config.json").write_text("{nope")
    with pytest.raises(ConfigError, match=r"config.json is not valid JSON\.$"):
        paths.server_name()


def test_serve_refuses_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([*SERVER, "serve", "--data-dir", str(tmp_path), "--port", str(port)],
                              env=server_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        f"tako-server: Could not listen on 127.0.0.1:{port} (see the log above); "
        "is another server running there?")


def test_settings_round_trip_and_refuse_tampering(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    state = AppState(binding(), RuntimeSettings(("python3", "app.py"), 2, {"SECRET": "hunter2"}))
    store.save(APP, state)
    assert store.load(APP) == state
    assert store.load("other/production") is None
    assert store.apps() == [APP]
    raw = (tmp_path / "state" / "apps" / "demo.production.enc").read_bytes()
    assert b"hunter2" not in raw
    (tmp_path / "state" / "apps" / "copy.production.enc").write_bytes(raw)
    with pytest.raises(ConfigError, match="^The settings file of app 'copy/production' .* does not decrypt"):
        store.load("copy/production")
    (tmp_path / "state" / "apps" / "demo.production.enc").write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(ConfigError, match="does not decrypt with the server key"):
        StateStore(tmp_path / "state").load(APP)
    assert "hunter2" not in repr(state) and state.backup.storage.secret_access_key not in repr(state)  # type: ignore[union-attr]


def test_interrupted_restore_is_recovered_at_start(tmp_path: Path) -> None:
    paths = ServerPaths(tmp_path)
    paths.prepare()
    live = paths.ensure_data_dir("demo", "production")
    (live / "app" / "keep.txt").write_text("the live data")
    staging = paths.restore_work / "demo.production.b1-AbCdEf12.0a1b2c3d"
    (staging / "tree").mkdir(parents=True)
    live.rename(staging / "aside")  # died between the two renames of the swap
    leftover = paths.backup_work / "b1-XyZ12345"
    leftover.mkdir()
    recover_interrupted_restores(paths)
    assert (live / "app" / "keep.txt").read_text() == "the live data"
    assert list(paths.restore_work.iterdir()) == [] and list(paths.backup_work.iterdir()) == []
