from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from Crypto.Cipher import AES
from typer.testing import Result

from tako_backups.project.envkeys import key_path
from tests.cli.remote_harness import ACCESS_KEY, APP, SECRET_KEY, Demo

ADD = (
    "storages",
    "add",
    "uploads",
    "--env",
    "production",
    "--bucket",
    "demo-uploads",
    "--endpoint",
    "https://s3.example.com/",
    "--access-key-id",
    "AKIA-UPLOADS",
    "--secret-access-key",
    "very-secret-value-123",
)


def open_with_key_file(token: str, key_id: str) -> str:
    key = base64.b64decode(key_path(key_id).read_text())
    raw = base64.b64decode(token)
    return AES.new(key, AES.MODE_GCM, nonce=raw[:12]).decrypt_and_verify(raw[12:-16], raw[-16:]).decode()


def stored(app_dir: Path) -> dict:
    return json.loads((app_dir / ".tako" / "secrets.json").read_text())


def test_add_writes_binding_resource_and_encrypted_credentials(
    app_dir: Path, tako: Callable[..., Result]
) -> None:
    original = (app_dir / "tako.toml").read_text()
    result = tako(*ADD, "--expires-on", "2031-06-30")
    assert result.exit_code == 0, result.output
    env = stored(app_dir)["production"]
    assert result.stdout == ("✔ Attached storage uploads to production.\n"
                             "Deploy to sync the storage binding to your server.\n")
    assert result.stderr == ""
    text = (app_dir / "tako.toml").read_text()
    assert (
        text
        == original.replace(
            'backup = { storage = "backups" }\n',
            'backup = { storage = "backups" }\nstorages = { uploads = "uploads" }\n',
        )
        + '\n[storages.uploads]\nprovider = "s3"\nbucket = "demo-uploads"\nendpoint = '
          '"https://s3.example.com"\n'
        'region = "auto"\nforce_path_style = false\n'
    )
    creds = env["storages"]["uploads"]
    assert creds["access_key_id"]["expires_on"] == creds["secret_access_key"]["expires_on"] == "2031-06-30"
    assert open_with_key_file(creds["access_key_id"]["value"], env["key_id"]) == "AKIA-UPLOADS"
    assert open_with_key_file(creds["secret_access_key"]["value"], env["key_id"]) == "very-secret-value-123"


def test_secrets_never_reach_any_output(demo: Demo, tako: Callable[..., Result]) -> None:
    """Every command runs to success (against an in-process server named in config.toml) before its
    output is scanned: a check of an early error message would prove nothing about the real path."""
    fleet = demo()
    commands = [
        (*ADD, "--json"),
        ("storages", "list"),
        ("storages", "list", "--json"),
        ("deploy", "--env", "production", "--dry-run"),
        ("deploy", "--env", "production", "-v", "--create-backup-key"),
        ("--json", "deploy", "--env", "production"),
        ("storages", "credentials", "uploads", "--env", "production", "--access-key-id", "AKIA-2",
         "--secret-access-key", "very-secret-value-456", "--json"),
    ]
    for args in commands:
        result = tako(*args)
        assert result.exit_code == 0, (args, result.output)
        for secret in ("very-secret-value-123", "very-secret-value-456", "AKIA-UPLOADS", "AKIA-2",
                       SECRET_KEY, ACCESS_KEY):
            assert secret not in result.output, (args, secret)
    # The two real deploys reached the server with the credentials, and took a backup each.
    assert fleet.commands() == [("la", "deploy"), ("la", "deploy")]
    assert [body["backup"]["storage"]["secret_access_key"] for _, body in fleet.requests] == [SECRET_KEY] * 2
    assert len(fleet.services["la"].list_backups(APP)["backups"]) == 2


def test_add_json_result(app_dir: Path, tako: Callable[..., Result]) -> None:
    result = tako(*ADD, "--json")
    assert json.loads(result.stdout) == {
        "ok": True,
        "command": "storages add",
        "app": "demo",
        "environment": "production",
        "binding": "uploads",
        "resource": "uploads",
        "provider": "s3",
        "dry_run": False,
    }


def test_env_defaults_to_production_without_a_warning(app_dir: Path, tako: Callable[..., Result]) -> None:
    result = tako("storages", "add", "files", "--provider", "local")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert 'storages = { files = "local" }' in (app_dir / "tako.toml").read_text()
    assert not (app_dir / ".tako").exists()


@pytest.mark.parametrize("ci", [False, True])
def test_missing_secret_without_a_terminal_is_takos_error(app_dir: Path, tako: Callable[..., Result],
                                                          monkeypatch: pytest.MonkeyPatch, ci: bool) -> None:
    if ci:  # a terminal, but --ci: no prompt either
        monkeypatch.setattr("tako_backups.cli.prompts.stdin_is_terminal", lambda: True)
    before = (app_dir / "tako.toml").read_text()
    result = tako(*ADD[:-2], *(["--ci"] if ci else []))
    assert (result.exit_code, result.stderr) == (
        1,
        "error: Password prompt requires an interactive terminal\nPass --secret-access-key.\n",
    )
    assert (app_dir / "tako.toml").read_text() == before
    assert not (app_dir / ".tako").exists()
    assert not (Path(os.environ["TAKO_HOME"]) / "keys").exists()


def test_prompts_on_a_terminal_with_hidden_input(
    app_dir: Path, tako: Callable[..., Result], terminal: None
) -> None:
    answers = "AKIA-TYPED\nvery-secret-value-123\nin 30 days\nn\n"
    result = tako(
        "storages",
        "add",
        "uploads",
        "--env",
        "production",
        "--bucket",
        "b",
        "--endpoint",
        "https://s3.example.com",
        input=answers,
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(
        "Access key id:Secret access key:Optional. Use YYYY-MM-DD, in 30 days, "
        "never, or leave blank.\nExpires on:Derive the production key from a "
        "passphrase (instead of a random key file)? [y/N]:"
    )
    assert "in 30 days" in result.stdout  # visible input is echoed, hidden input is not
    assert "AKIA-TYPED" not in result.output and "very-secret-value-123" not in result.output
    env = stored(app_dir)["production"]
    creds = env["storages"]["uploads"]
    assert open_with_key_file(creds["access_key_id"]["value"], env["key_id"]) == "AKIA-TYPED"
    assert open_with_key_file(creds["secret_access_key"]["value"], env["key_id"]) == "very-secret-value-123"
    assert (
        creds["access_key_id"]["expires_on"]
        == (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=30)).isoformat()
    )


def test_passphrase_chosen_at_the_prompt_derives_the_key(
    app_dir: Path, tako: Callable[..., Result], terminal: None
) -> None:
    result = tako(*ADD, "--expires-on", "never", input="y\nmy pass phrase\nmy pass phrase\n")
    assert result.exit_code == 0, result.output
    key_id = stored(app_dir)["production"]["key_id"]
    expected = hashlib.pbkdf2_hmac(
        "sha256", b"my pass phrase", f"tako-secrets-v1:{key_id}".encode(), 600_000, 32
    )
    assert base64.b64decode(key_path(key_id).read_text()) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--provider", "local", "--bucket", "b"), "S3 storage options cannot be used with local storage."),
        (
            ("--provider", "local", "--resource", "files"),
            "Local storage uses the built-in resource name 'local'.",
        ),
        (("--endpoint", "https://s3.example.com"), "Bucket is required for S3 storage.\nPass --bucket."),
        (("--bucket", "b"), "Endpoint is required for S3 storage.\nPass --endpoint."),
        (
            ("--bucket", "b", "--endpoint", "http://s3.example.com"),
            "Storage endpoints must use https.\ntako-backups also accepts http:// for loopback hosts such as "
            "127.0.0.1 (Tako does not).",
        ),
        (("--bucket", "b", "--endpoint", "ftp://s3.example.com"), "Storage endpoints must use https."),
        (("--bucket", "b", "--endpoint", "s3.example.com"), "relative URL without a base"),
        (("--bucket", "b", "--endpoint", "https://s3.example.com", "--public-base-url", "https://"),
         "empty host"),
    ],
)
def test_add_rules(app_dir: Path, tako: Callable[..., Result], args: tuple[str, ...], message: str) -> None:
    result = tako("storages", "add", "uploads", "--env", "production", *args)
    assert (result.exit_code, result.stderr) == (1, f"error: {message}\n")


def test_dry_run_writes_nothing_and_says_what_it_would(app_dir: Path, tako: Callable[..., Result]) -> None:
    before = (app_dir / "tako.toml").read_text()
    result = tako("--dry-run", *ADD)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        'Would write tako.toml: [envs.production].storages.uploads = "uploads" and [storages.uploads]\n'
        f"Would store credentials of 'uploads' for production in {app_dir / '.tako' / 'secrets.json'}\n"
        "Dry run: nothing was written.\n"
    )
    assert (app_dir / "tako.toml").read_text() == before
    assert not (app_dir / ".tako").exists() and not (Path(os.environ["TAKO_HOME"]) / "keys").exists()


def test_credentials_rotates_and_keeps_the_env_key(app_dir: Path, tako: Callable[..., Result]) -> None:
    first = tako(
        "storages",
        "credentials",
        "backups",
        "--env",
        "production",
        "--access-key-id",
        "A1",
        "--secret-access-key",
        "S1",
    )
    key_id = stored(app_dir)["production"]["key_id"]
    second = tako(
        "storages",
        "credentials",
        "backups",
        "--env",
        "production",
        "--access-key-id",
        "A2",
        "--secret-access-key",
        "S2",
        "--expires-on",
        "never",
    )
    assert second.stdout == ("✔ Updated storage credentials backups for production.\n"
                             "Deploy to sync the storage credentials to your server.\n")
    assert second.stderr == ""
    assert first.exit_code == second.exit_code == 0
    env = stored(app_dir)["production"]
    assert env["key_id"] == key_id
    assert env["storages"]["backups"]["secret_access_key"] == {
        "value": env["storages"]["backups"]["secret_access_key"]["value"]
    }
    assert open_with_key_file(env["storages"]["backups"]["access_key_id"]["value"], key_id) == "A2"


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        ("nope", "Storage resource 'nope' is not declared in tako.toml."),
        ("local", "Storage resource 'local' is not declared in tako.toml."),
        ("Up", "Validation error: Storage name can only contain lowercase letters, numbers, hyphens, and "
               "underscores. Found: 'U'"),
    ],
)
def test_credentials_errors(app_dir: Path, tako: Callable[..., Result], resource: str, message: str) -> None:
    result = tako(
        "storages",
        "credentials",
        resource,
        "--env",
        "production",
        "--access-key-id",
        "A",
        "--secret-access-key",
        "S",
    )
    assert (result.exit_code, result.stderr) == (1, f"error: {message}\n")


def test_wrong_env_key_is_reported_without_values(app_dir: Path, tako: Callable[..., Result]) -> None:
    assert tako(*ADD).exit_code == 0
    key_id = stored(app_dir)["production"]["key_id"]
    key_path(key_id).write_text(base64.b64encode(os.urandom(32)).decode())
    result = tako(
        "storages",
        "credentials",
        "backups",
        "--env",
        "production",
        "--access-key-id",
        "A",
        "--secret-access-key",
        "S",
    )
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"error: Cannot decrypt the secrets of environment 'production' with key file "
        f"{key_path(key_id)}. They need key '{key_id}'"
    )


def test_list_shows_resources_bindings_backup_and_expiry(app_dir: Path, tako: Callable[..., Result]) -> None:
    tako(*ADD, "--expires-on", "2031-06-30")
    result = tako("storages", "list")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Storages\n"
        "demo\n"
        "Resources:\n"
        "  backups: s3, bucket demo-backups at https://s3.example.com, region auto\n"
        "  uploads: s3, bucket demo-uploads at https://s3.example.com, region auto\n"
        "production:\n"
        "  storage uploads -> uploads\n"
        "  backup -> backups\n"
        "  credentials backups: missing\n"
        "  credentials uploads: set, expires on 2031-06-30\n"
    )
    data = json.loads(tako("storages", "list", "--json").stdout)
    assert data["environments"]["production"]["credentials"]["uploads"] == {
        "set": True,
        "expires_on": "2031-06-30",
        "expired": False,
        "expires_soon": False,
    }


def test_binding_another_env_to_a_declared_resource_needs_no_s3_flags(
    app_dir: Path, tako: Callable[..., Result]
) -> None:
    before = (app_dir / "tako.toml").read_text()
    result = tako(
        "storages",
        "add",
        "archive",
        "--env",
        "development",
        "--resource",
        "backups",
        "--access-key-id",
        "A",
        "--secret-access-key",
        "S",
    )
    assert result.exit_code == 0, result.output
    assert (app_dir / "tako.toml").read_text() == before.replace(
        "\n[storages.backups]",
        '\n[envs.development]\nstorages = { archive = "backups" }\n\n[storages.backups]'
    )
    assert list(stored(app_dir)["development"]["storages"]) == ["backups"]


def test_a_new_env_without_a_route_is_refused_before_anything_is_written(
    app_dir: Path, tako: Callable[..., Result]
) -> None:
    before = (app_dir / "tako.toml").read_text()
    result = tako("storages", "add", "archive", "--env", "staging", "--resource", "backups",
                  "--access-key-id", "A", "--secret-access-key", "S")
    assert (result.exit_code, result.stderr) == (1, (
        "error: Validation error: Environment 'staging' must define either 'route' or 'routes'\n"
        "We only write a tako.toml that Tako can load: declare [envs.staging] with its route in tako.toml "
        "first.\n"))
    assert (app_dir / "tako.toml").read_text() == before
    assert not (app_dir / ".tako").exists()
