"""`tako secrets key export | import`: Tako's bundle, behaviour and texts (tako/src/commands/secret/key.rs).

Export copies to the clipboard through the first tool that works (fake ``wl-copy``, ``xclip``,
``xsel`` scripts on PATH stand in for the real ones); import reads stdin's first line without a
terminal, as a CI runner gives it."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

from tako_backups.project.envkeys import key_path
from tako_backups.project.secrets import load_secrets

Tako = Callable[..., Result]
CREDENTIALS = ("storages", "credentials", "backups", "--env", "production", "--access-key-id", "AKIA-1",
               "--secret-access-key", "secret-1")


def tool(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.fixture
def clipboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """wl-copy fails (no Wayland), xclip takes the text: returns the file it wrote it to."""
    folder = tmp_path / "bin"
    folder.mkdir()
    tool(folder, "wl-copy", "exit 1")
    tool(folder, "xclip", f'printf "%s\\n" "$*" > {folder}/xclip.args; cat > {folder}/clipboard')
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    return folder / "clipboard"


def unbundle(text: str) -> dict:
    assert "=" not in text
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def bundle(key_id: str, key: bytes, version: int = 1) -> str:
    payload = json.dumps({"version": version, "id": key_id, "key": base64.b64encode(key).decode()},
                         separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode()


def export(tako: Tako, clipboard: Path) -> str:
    result = tako("secrets", "key", "export", "--env", "production")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "✔ Key copied to clipboard.\n", "")
    return clipboard.read_text()


def fresh_machine(tako_home: Path) -> None:
    """Another laptop or a CI runner: the same checkout, no key files."""
    for path in (tako_home / "keys").iterdir():
        path.unlink()


def test_export_copies_takos_bundle_and_prints_no_key(app_dir: Path, tako: Tako, clipboard: Path) -> None:
    assert tako(*CREDENTIALS).exit_code == 0
    key_id = load_secrets(app_dir / ".tako" / "secrets.json").envs["production"].key_id
    text = export(tako, clipboard)
    assert (clipboard.parent / "xclip.args").read_text() == "-selection clipboard\n"
    payload = unbundle(text)
    assert list(payload) == ["version", "id", "key"]
    assert payload == {"version": 1, "id": key_id, "key": key_path(key_id).read_text()}
    assert base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)) == json.dumps(
        payload, separators=(",", ":")).encode()


def test_export_without_a_clipboard_tool_is_takos_error(app_dir: Path, tako: Tako, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    for name in ("wl-copy", "xclip", "xsel"):
        tool(folder, name, "exit 1")
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    assert tako(*CREDENTIALS).exit_code == 0
    result = tako("secrets", "key", "export", "--env", "production")
    assert (result.exit_code, result.stdout, result.stderr) == (
        1, "", "error: Failed to copy key to clipboard (tried wl-copy, xclip, xsel).\n")


@pytest.mark.parametrize(("args", "message"), [
    (("--env", "staging"), "No secrets configured for environment 'staging'."),
    ((), "Missing required environment. Pass --env or run interactively to choose one."),
    (("--env", "Prod"), "Validation error: Environment name can only contain lowercase letters, numbers, and "
                        "hyphens. Found: 'P'"),
])
def test_export_errors(app_dir: Path, tako: Tako, clipboard: Path, args: tuple[str, ...],
                       message: str) -> None:
    assert tako(*CREDENTIALS).exit_code == 0
    result = tako("secrets", "key", "export", *args)
    assert (result.exit_code, result.stderr) == (1, f"error: {message}\n")
    assert not clipboard.exists()


def test_export_without_the_key_is_takos_missing_key_error(app_dir: Path, tako: Tako, tako_home: Path,
                                                            clipboard: Path) -> None:
    assert tako(*CREDENTIALS).exit_code == 0
    fresh_machine(tako_home)
    result = tako("secrets", "key", "export", "--env", "production")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: Unable to decrypt production secrets. Run `tako secrets key import` to import an exported "
        "key "
        "or passphrase.\n")


def test_import_from_stdin_writes_the_key_file(app_dir: Path, tako: Tako, tako_home: Path,
                                               clipboard: Path) -> None:
    assert tako(*CREDENTIALS).exit_code == 0
    key_id = load_secrets(app_dir / ".tako" / "secrets.json").envs["production"].key_id
    original = key_path(key_id).read_bytes()
    text = export(tako, clipboard)
    fresh_machine(tako_home)
    result = tako("secrets", "key", "import", input=f"{text}\r\nignored second line\n")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "✔ Imported production key.\n", "")
    assert key_path(key_id).read_bytes() == original and not original.endswith(b"\n")
    assert stat.S_IMODE(key_path(key_id).stat().st_mode) == 0o600
    assert text not in result.output
    assert tako("storages", "credentials", "backups", "--env", "production", "--access-key-id", "AKIA-2",
                "--secret-access-key", "secret-2").exit_code == 0


def test_import_of_a_key_no_env_uses(app_dir: Path, tako: Tako) -> None:
    key = os.urandom(32)
    result = tako("secrets", "key", "import", input=bundle("00112233445566ff", key) + "\n")
    assert (result.exit_code, result.stdout) == (0, "✔ Imported key 00112233445566ff.\n")
    assert base64.b64decode(key_path("00112233445566ff").read_text()) == key
    assert not (app_dir / ".tako" / "secrets.json").exists()


def test_import_with_env_adds_the_env_or_checks_its_key_id(app_dir: Path, tako: Tako) -> None:
    first = tako("secrets", "key", "import", "--env", "staging",
                 input=bundle("00112233445566ff", os.urandom(32)))
    assert (first.exit_code, first.stdout) == (0, "✔ Imported staging key.\n")
    assert load_secrets(app_dir / ".tako" / "secrets.json").envs["staging"].key_id == "00112233445566ff"
    other = tako("secrets", "key", "import", "--env", "staging",
                 input=bundle("aabbccddeeff0011", os.urandom(32)))
    assert (other.exit_code, other.stderr) == (1, "error: Exported key does not match staging key.\n")
    assert not key_path("aabbccddeeff0011").exists()


def test_a_key_that_does_not_decrypt_is_refused_and_nothing_is_written(app_dir: Path, tako: Tako,
                                                                       tako_home: Path) -> None:
    """Tako checks app secrets, backup keys and credentials; we also check storage credentials."""
    assert tako(*CREDENTIALS).exit_code == 0
    key_id = load_secrets(app_dir / ".tako" / "secrets.json").envs["production"].key_id
    fresh_machine(tako_home)
    before = (app_dir / ".tako" / "secrets.json").read_text()
    result = tako("secrets", "key", "import", input=bundle(key_id, os.urandom(32)))
    assert (result.exit_code, result.stderr) == (
        1, "error: Exported key does not decrypt production storage credentials.\n")
    assert not key_path(key_id).exists()
    # no key: nothing else works
    assert tako("backups", "keys", "rotate", "--env", "production").exit_code == 1
    assert (app_dir / ".tako" / "secrets.json").read_text() == before


@pytest.mark.parametrize(("stdin", "message"), [
    ("", "No exported key provided on stdin"),
    ("  \n", "Exported key cannot be empty"),
    (bundle("00112233445566ff", b"k" * 32) + "=\n", "Invalid key payload: Invalid padding"),
    ("ab$d\n", "Invalid key payload: Invalid symbol 36, offset 2."),
    (bundle("00112233445566ff", b"k" * 32, version=2), "Unsupported key version: 2"),
    (bundle("0011", b"k" * 32), "Validation error: Invalid key id '0011'. Expected 16 hex characters."),
    (bundle("00112233445566ff", b"k" * 16), "Encryption error: Key must be 32 bytes, got 16"),
    (base64.urlsafe_b64encode(b'{"version":1,"id":"00112233445566ff"}').rstrip(b"=").decode(),
     "Invalid key payload: missing field `key`"),
])
def test_import_errors_are_takos(app_dir: Path, tako: Tako, stdin: str, message: str) -> None:
    result = tako("secrets", "key", "import", input=stdin)
    assert (result.exit_code, result.stderr) == (1, f"error: {message}\n")


def test_import_on_a_terminal_prompts_hidden_unless_ci(app_dir: Path, tako: Tako, terminal: None) -> None:
    text = bundle("00112233445566ff", os.urandom(32))
    result = tako("secrets", "key", "import", input=f"1\n{text}\n")
    assert result.exit_code == 0, result.output
    assert text not in result.output
    assert result.stderr == "  1. Exported key\n  2. Passphrase\nKey source:Exported key:"
    ci = tako("--ci", "secrets", "key", "import", input=f"{text}\n")
    assert (ci.exit_code, ci.stderr) == (1, "error: Password prompt requires an interactive terminal\n")


def test_import_needs_a_tako_toml(tmp_path: Path, tako: Tako, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = tako("secrets", "key", "import", input="x\n")
    assert (result.exit_code, result.stderr) == (
        1, f"error: Config file not found: {tmp_path / 'tako.toml'}\n")


def test_passphrase_import_derives_and_checks_the_key(app_dir: Path, tako: Tako, tako_home: Path) -> None:
    first = tako("secrets", "key", "import", "--passphrase", "--env", "production", input="correct horse \n")
    assert (first.exit_code, first.stdout) == (0, "✔ Imported production key.\n")
    key_id = load_secrets(app_dir / ".tako" / "secrets.json").envs["production"].key_id
    salt = f"tako-secrets-v1:{key_id}".encode()
    expected = hashlib.pbkdf2_hmac("sha256", b"correct horse ", salt, 600_000, 32)
    assert base64.b64decode(key_path(key_id).read_text()) == expected
    assert tako(*CREDENTIALS).exit_code == 0  # encrypted under the passphrase's key
    fresh_machine(tako_home)
    wrong = tako("secrets", "key", "import", "--passphrase", "--env", "production", input="wrong\n")
    assert (wrong.exit_code, wrong.stderr) == (1, "error: Invalid passphrase.\n")
    assert not key_path(key_id).exists()
    again = tako("secrets", "key", "import", "--passphrase", "--env", "production", input="correct horse \n")
    assert again.exit_code == 0 and base64.b64decode(key_path(key_id).read_text()) == expected


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (("--passphrase",), "x\n", "Missing required environment. Pass --env with --passphrase."),
    (("--passphrase", "--env", "production"), "", "No passphrase provided on stdin"),
    (("--passphrase", "--env", "production"), "\n", "Passphrase cannot be empty."),
])
def test_passphrase_import_errors(app_dir: Path, tako: Tako, args: tuple[str, ...], stdin: str,
                                  message: str) -> None:
    result = tako("secrets", "key", "import", *args, input=stdin)
    assert (result.exit_code, result.stderr) == (1, f"error: {message}\n")


def test_a_key_file_holding_another_key_is_replaced_only_by_a_proven_key(app_dir: Path, tako: Tako,
                                                                         clipboard: Path) -> None:
    assert tako(*CREDENTIALS).exit_code == 0
    key_id = load_secrets(app_dir / ".tako" / "secrets.json").envs["production"].key_id
    good = export(tako, clipboard)
    key_path(key_id).write_text(base64.b64encode(os.urandom(32)).decode())
    result = tako("secrets", "key", "import", input=good)
    assert (result.exit_code, result.stdout) == (0, "✔ Imported production key.\n")
    assert unbundle(good)["key"] == key_path(key_id).read_text()
    unproven = tako("secrets", "key", "import", input=bundle("00112233445566ff", os.urandom(32)))
    assert unproven.exit_code == 0
    clash = tako("secrets", "key", "import", input=bundle("00112233445566ff", os.urandom(32)))
    assert (clash.exit_code, clash.stderr) == (1, (
        f"error: {key_path('00112233445566ff')} already holds another key for 00112233445566ff, and the "
        "imported key could not be checked against any encrypted value. Move that file away to import this "
        "key.\n"))
