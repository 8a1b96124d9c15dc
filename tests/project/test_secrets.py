from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
from Crypto.Cipher import AES  # pycryptodome: an independent AES-GCM

from tako_backups.errors import ConfigError
from tako_backups.project.envkeys import KeyPrompts, key_path, seal, unseal
from tako_backups.project.secrets import (
    EncryptedBackupKey,
    EnvSecrets,
    Secrets,
    SecretValue,
    StorageCredentials,
    dump_secrets,
    load_secrets,
    open_env_key,
    parse_secrets,
    save_secrets,
    set_storage_credentials,
    storage_credentials,
)

KEY_ID = "0123456789abcdef"


def independent_seal(text: str, key: bytes) -> str:
    nonce = os.urandom(12)
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce)
    ciphertext, tag = cipher.encrypt_and_digest(text.encode())
    return base64.b64encode(nonce + ciphertext + tag).decode()


def independent_open(token: str, key: bytes) -> str:
    raw = base64.b64decode(token)
    cipher = AES.new(key, AES.MODE_GCM, nonce=raw[:12])
    return cipher.decrypt_and_verify(raw[12:-16], raw[-16:]).decode()


def install_key(key: bytes, key_id: str = KEY_ID) -> Path:
    path = key_path(key_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(base64.b64encode(key).decode())
    return path


def test_value_sealed_independently_opens_with_our_code_and_back(tmp_path: Path) -> None:
    key = os.urandom(32)
    install_key(key)
    path = tmp_path / "secrets.json"
    path.write_text(
        json.dumps(
            {
                "production": {
                    "key_id": KEY_ID,
                    "app": {},
                    "storages": {
                        "r2": {
                            "access_key_id": {"value": independent_seal("AKIA-EXAMPLE", key)},
                            "secret_access_key": {
                                "value": independent_seal("s3cr3t/ü", key),
                                "expires_on": "2031-01-01",
                            },
                        }
                    },
                }
            }
        )
    )
    secrets = load_secrets(path)
    env_key = open_env_key(secrets, "production")
    assert storage_credentials(secrets, "production", "r2", env_key) == ("AKIA-EXAMPLE", "s3cr3t/ü")
    set_storage_credentials(secrets, "production", "r2", env_key, "AKIA-NEW", "n3w-secret", None)
    save_secrets(secrets)
    stored = json.loads(path.read_text())["production"]["storages"]["r2"]
    assert independent_open(stored["access_key_id"]["value"], key) == "AKIA-NEW"
    assert independent_open(stored["secret_access_key"]["value"], key) == "n3w-secret"


def test_sealed_layout_is_nonce_ciphertext_tag() -> None:
    key = os.urandom(32)
    token = seal("hello", key)
    assert len(base64.b64decode(token)) == 12 + 5 + 16
    assert independent_open(token, key) == "hello"
    assert unseal(independent_seal("hello", key), key) == "hello"


def test_file_format_matches_tako_exactly(tmp_path: Path) -> None:
    secrets = Secrets(
        path=tmp_path / ".tako" / "secrets.json",
        envs={
            "staging": EnvSecrets(key_id="fedcba9876543210"),
            "production": EnvSecrets(
                key_id=KEY_ID,
                backup_keys=[EncryptedBackupKey("backup-key-00112233aabbccdd", "Qk0=")],
                app={"ZED": SecretValue("WlpA"), "API_KEY": SecretValue("QUJD", "2030-05-01")},
                storages={
                    "r2": StorageCredentials(
                        SecretValue("QQ==", "2030-01-01"), SecretValue("Qg==", "2030-01-01")
                    )
                },
                credentials={"ssl.cloudflare": SecretValue("Q0Y=")},
            ),
        },
    )
    save_secrets(secrets)
    text = secrets.path.read_text()
    assert (
        text
        == """{
  "production": {
    "key_id": "0123456789abcdef",
    "backup_keys": [
      {
        "id": "backup-key-00112233aabbccdd",
        "value": "Qk0="
      }
    ],
    "app": {
      "API_KEY": {
        "value": "QUJD",
        "expires_on": "2030-05-01"
      },
      "ZED": {
        "value": "WlpA"
      }
    },
    "storages": {
      "r2": {
        "access_key_id": {
          "value": "QQ==",
          "expires_on": "2030-01-01"
        },
        "secret_access_key": {
          "value": "Qg==",
          "expires_on": "2030-01-01"
        }
      }
    },
    "credentials": {
      "ssl.cloudflare": {
        "value": "Q0Y="
      }
    }
  },
  "staging": {
    "key_id": "fedcba9876543210",
    "app": {},
    "storages": {}
  }
}"""
    )
    assert stat.S_IMODE(secrets.path.stat().st_mode) == 0o600
    assert dump_secrets(parse_secrets(text, secrets.path)) == text


@pytest.mark.parametrize(
    ("document", "detail"),
    [
        (
            {"production": {"key_id": KEY_ID, "extra": 1}},
            "environment 'production' has unknown field 'extra'",
        ),
        ({"production": {"key_id": "xyz"}}, "environment 'production' key_id must be 16 hex characters"),
        (
            {"production": {"key_id": KEY_ID, "app": {"A": {"value": "x", "note": "y"}}}},
            "environment 'production' secret 'A' has unknown field 'note'",
        ),
        (
            {"production": {"key_id": KEY_ID, "storages": {"r2": {"access_key_id": {"value": "x"}}}}},
            "environment 'production' storage 'r2' is missing field 'secret_access_key'",
        ),
        (
            {"production": {"key_id": KEY_ID, "backup_keys": [{"id": "key-1", "value": "x"}]}},
            "environment 'production' has a backup key id that is not backup-key-<16 hex>",
        ),
        (
            {"production": {"key_id": KEY_ID, "app": {"A": {"value": "x", "expires_on": "soon"}}}},
            "environment 'production' secret 'A' expires_on 'soon' is not a YYYY-MM-DD date",
        ),
    ],
)
def test_unknown_or_malformed_fields_are_rejected(tmp_path: Path, document: dict, detail: str) -> None:
    path = tmp_path / "secrets.json"
    with pytest.raises(ConfigError) as caught:
        parse_secrets(json.dumps(document), path)
    assert str(caught.value) == f"{path} is not a valid Tako secrets file: {detail}."


def test_missing_or_blank_file_means_no_secrets(tmp_path: Path) -> None:
    assert load_secrets(tmp_path / "none.json").envs == {}
    assert parse_secrets("  \n", tmp_path / "x.json").envs == {}


def sealed_env(tmp_path: Path, key: bytes) -> Secrets:
    return Secrets(
        path=tmp_path / "secrets.json",
        envs={
            "production": EnvSecrets(
                key_id=KEY_ID, app={"TOKEN": SecretValue(independent_seal("top-secret-value", key))}
            )
        },
    )


def test_wrong_key_names_env_key_id_and_location_never_the_value(tmp_path: Path) -> None:
    install_key(os.urandom(32))
    secrets = sealed_env(tmp_path, os.urandom(32))
    with pytest.raises(ConfigError) as caught:
        open_env_key(secrets, "production")
    message = str(caught.value)
    where = key_path(KEY_ID)
    assert message == (
        f"Cannot decrypt the secrets of environment 'production' with key file {where}. They "
        f"need key '{KEY_ID}', looked for at {where} (or derived from TAKO_SECRETS_PASSPHRASE). "
        "Put the right key file there or set the right passphrase."
    )
    assert "top-secret-value" not in message and secrets.envs["production"].app["TOKEN"].value not in message


def test_missing_key_file_says_where_it_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        open_env_key(sealed_env(tmp_path, os.urandom(32)), "production")
    assert str(caught.value) == (
        "Unable to decrypt production secrets. Run `tako secrets key import` to import an exported key or "
        f"passphrase.\nNo key {KEY_ID} at {key_path(KEY_ID)} and TAKO_SECRETS_PASSPHRASE is not set."
    )


def test_damaged_key_file_is_reported(tmp_path: Path) -> None:
    install_key(b"short")
    with pytest.raises(ConfigError) as caught:
        open_env_key(sealed_env(tmp_path, os.urandom(32)), "production")
    assert str(caught.value) == f"Key file {key_path(KEY_ID)} is damaged: it must hold base64 of 32 bytes."


def test_new_env_key_file_is_private(tmp_path: Path, tako_home: Path) -> None:
    secrets = Secrets(path=tmp_path / "secrets.json")
    key = open_env_key(secrets, "staging", create=True)
    path = key_path(secrets.envs["staging"].key_id)
    assert key.created and key.source == f"key file {path}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert base64.b64decode(path.read_text()) == key.key
    assert open_env_key(secrets, "staging", create=True).created is False


def test_passphrase_mode_derives_takos_key_and_writes_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAKO_SECRETS_PASSPHRASE", "correct horse battery staple")
    expected = hashlib.pbkdf2_hmac(
        "sha256", b"correct horse battery staple", f"tako-secrets-v1:{KEY_ID}".encode(), 600_000, 32
    )
    secrets = sealed_env(tmp_path, expected)
    key = open_env_key(secrets, "production")
    assert key.key == expected and key.source == "TAKO_SECRETS_PASSPHRASE"
    assert not key_path(KEY_ID).exists()
    monkeypatch.setenv("TAKO_SECRETS_PASSPHRASE", "wrong passphrase")
    with pytest.raises(ConfigError) as caught:
        open_env_key(secrets, "production")
    assert "with TAKO_SECRETS_PASSPHRASE" in str(caught.value)


def test_prompted_passphrase_is_checked_then_saved_as_key_file(tmp_path: Path) -> None:
    derived = hashlib.pbkdf2_hmac("sha256", b"pw", f"tako-secrets-v1:{KEY_ID}".encode(), 600_000, 32)
    secrets = sealed_env(tmp_path, derived)
    asked: list[tuple[str, str]] = []

    def ask(env: str, key_id: str) -> str:
        asked.append((env, key_id))
        return "pw"

    key = open_env_key(secrets, "production", KeyPrompts(ask_passphrase=ask))
    assert asked == [("production", KEY_ID)]
    assert key.key == derived and base64.b64decode(key_path(KEY_ID).read_text()) == derived
