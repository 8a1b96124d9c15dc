"""RequestVerifier refuses every forged, replayed, stale or unauthorized request."""

from __future__ import annotations

import base64
import os
import random
import threading

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from starlette.datastructures import Headers

from tako_backups.errors import AuthError
from tako_backups.remote import sshsig, sshwire
from tako_backups.remote.signing import (
    FileSigner,
    MissingAuthError,
    RequestVerifier,
    sign_request,
    signed_message,
)

NOW = 1_710_000_000
BODY = b'{"command":"list_backups","app":"demo/production"}'
NONCE = "00112233445566778899aabbccddeeff0011223344556677"


@pytest.fixture
def keys_file(tmp_path, ssh_keys):
    path = tmp_path / "management-authorized-keys"
    path.write_text(f"# management keys\n{ssh_keys['ed25519'].pub_line}\n")
    return path


@pytest.fixture
def verifier(keys_file):
    return RequestVerifier(keys_file)


@pytest.fixture
def other(ssh_keys):
    return FileSigner.load(ssh_keys["other"].path)


def refused(verifier, headers, body=BODY, now=NOW, *, required=False) -> str:
    """The reason ``verify`` gives; ``required`` says it must be a MissingAuthError (Tako's
    ``management auth required``), else a plain AuthError (``management auth failed``)."""
    with pytest.raises(AuthError) as caught:
        verifier.verify(headers, body, now=now)
    assert isinstance(caught.value, MissingAuthError) == required, caught.value
    return str(caught.value)


def test_valid_request_returns_the_authorized_key(verifier, signer, ssh_keys):
    key = verifier.verify(sign_request(signer, BODY, timestamp=NOW, nonce=NONCE), BODY, now=NOW)
    assert key.fingerprint == ssh_keys["ed25519"].fingerprint
    assert key.comment == "ed25519@test"


def test_sign_request_makes_fresh_hex_nonce_and_current_timestamp(signer, verifier):
    first, second = sign_request(signer, BODY), sign_request(signer, BODY)
    assert len(first["x-tako-nonce"]) == 48 and int(first["x-tako-nonce"], 16) >= 0
    assert first["x-tako-nonce"] != second["x-tako-nonce"]
    assert sorted(first) == ["x-tako-key-fingerprint", "x-tako-nonce", "x-tako-signature", "x-tako-timestamp"]
    verifier.verify(first, BODY)
    verifier.verify(second, BODY)


@pytest.mark.parametrize(
    "missing", ["x-tako-key-fingerprint", "x-tako-timestamp", "x-tako-nonce", "x-tako-signature"]
)
def test_unsigned_request_is_refused(verifier, signer, missing):
    headers = sign_request(signer, BODY, timestamp=NOW, nonce=NONCE)
    del headers[missing]
    assert refused(verifier, headers, required=True) == (
        f"Missing {missing} header; the request must be signed.")
    assert refused(verifier, {}, required=True) == (
        "Missing x-tako-key-fingerprint header; the request must be signed.")
    assert refused(verifier, {**headers, missing: " \t "}, required=True) == (
        f"Blank {missing} header; the request must be signed.")


def test_headers_are_checked_in_takos_order(verifier, signer):
    """Each header in turn (fingerprint, timestamp, nonce, signature): missing or blank is
    'required', not visible ASCII is 'failed' -- so the first bad header decides."""
    headers = sign_request(signer, BODY, timestamp=NOW, nonce=NONCE)
    broken = {**headers, "x-tako-timestamp": "17\x01"}
    del broken["x-tako-nonce"]
    assert refused(verifier, broken) == (
        "The x-tako-timestamp header holds characters other than visible ASCII.")
    broken = {**headers, "x-tako-nonce": "n\u00e9" * 8}
    del broken["x-tako-timestamp"]
    assert refused(verifier, broken, required=True) == (
        "Missing x-tako-timestamp header; the request must be signed.")
    padded = {name: f" \t{value}\t " for name, value in headers.items()}
    assert verifier.verify(padded, BODY, now=NOW).key_type == "ssh-ed25519"


def test_replayed_nonce_is_refused(verifier, signer):
    headers = sign_request(signer, BODY, timestamp=NOW, nonce=NONCE)
    verifier.verify(headers, BODY, now=NOW)
    assert refused(verifier, headers, now=NOW + 10) == "Nonce was already used (replayed request)."


def test_replay_of_future_dated_request_is_refused_while_its_timestamp_is_valid(verifier, signer):
    headers = sign_request(signer, BODY, timestamp=NOW + 299, nonce=NONCE)
    verifier.verify(headers, BODY, now=NOW)
    assert refused(verifier, headers, now=NOW + 590) == "Nonce was already used (replayed request)."


def test_concurrent_replays_let_exactly_one_through(verifier, signer):
    headers = sign_request(signer, BODY, timestamp=NOW, nonce=NONCE)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        try:
            verifier.verify(headers, BODY, now=NOW)
            outcomes.append("ok")
        except AuthError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["Nonce was already used (replayed request)."] * 7 + ["ok"]


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        (-301, "Request timestamp is 301 s old (limit 300 s); check the clock."),
        (301, "Request timestamp is 301 s in the future (limit 300 s); check the clock."),
    ],
)
def test_stale_and_future_timestamps_are_refused(verifier, signer, offset, message):
    headers = sign_request(signer, BODY, timestamp=NOW + offset, nonce=NONCE)
    assert refused(verifier, headers) == message


@pytest.mark.parametrize("offset", [-300, 300])
def test_timestamps_at_the_skew_limit_are_accepted(verifier, signer, offset):
    headers = sign_request(signer, BODY, timestamp=NOW + offset, nonce=NONCE)
    assert verifier.verify(headers, BODY, now=NOW + 0.9).key_type == "ssh-ed25519"


def test_skew_is_counted_in_whole_seconds(verifier, signer):
    headers = sign_request(signer, BODY, timestamp=NOW - 300, nonce=NONCE)
    assert refused(verifier, headers, now=NOW + 1.2) == (
        "Request timestamp is 301 s old (limit 300 s); check the clock."
    )


def test_mangled_signatures_only_ever_raise_auth_error(verifier, signer, ssh_keys):
    rng = random.Random(4)
    headers = sign_request(signer, BODY, timestamp=NOW, nonce=NONCE)
    blob = bytearray(sshsig.dearmor(base64.b64decode(headers["x-tako-signature"]).decode()))
    reasons = set()
    for _ in range(400):
        mangled = bytearray(blob)
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(mangled))
            mangled[position] = rng.randrange(256)
        if rng.random() < 0.2:
            del mangled[rng.randrange(len(mangled)) :]
        if mangled == blob:
            continue
        value = base64.b64encode(sshsig.armor(bytes(mangled)).encode()).decode()
        with pytest.raises(AuthError) as caught:
            verifier.verify({**headers, "x-tako-signature": value}, BODY, now=NOW)
        reasons.add(str(caught.value).split(":")[0])
    assert "Bad signature" in reasons and "Signature is malformed." in reasons


@pytest.mark.parametrize("stamp", ["abc", "1.5", "1e9", "0x10", "9" * 19, "--5", "+"])
def test_malformed_timestamp_is_refused(verifier, signer, stamp):
    headers = {**sign_request(signer, BODY, timestamp=NOW, nonce=NONCE), "x-tako-timestamp": stamp}
    assert refused(verifier, headers) == "Invalid x-tako-timestamp header (expected unix seconds)."


def test_timestamps_read_as_rusts_i64_parse_reads_them(verifier, signer):
    """A sign is allowed (Tako's server parses an i64), and what is signed is the text as sent."""
    headers = sign_request(signer, BODY, timestamp=NOW, nonce=NONCE)
    signed_plus = sign_request(signer, BODY, nonce=NONCE[::-1], timestamp=NOW)
    signed_plus["x-tako-timestamp"] = f"+{NOW}"
    assert refused(verifier, signed_plus).startswith("Bad signature")  # signed without the '+'
    assert refused(verifier, {**headers, "x-tako-timestamp": "-5"}).startswith("Request timestamp is ")


def test_body_changed_after_signing_is_refused(verifier, signer):
    headers = sign_request(signer, BODY, timestamp=NOW, nonce=NONCE)
    tampered = BODY.replace(b"list_backups", b"restore_backup")
    assert refused(verifier, headers, body=tampered) == "Bad signature: signature does not verify."


def test_timestamp_or_nonce_changed_after_signing_is_refused(verifier, signer):
    headers = sign_request(signer, BODY, timestamp=NOW, nonce=NONCE)
    moved = {**headers, "x-tako-timestamp": str(NOW + 1)}
    assert refused(verifier, moved) == "Bad signature: signature does not verify."
    renonced = {**headers, "x-tako-nonce": NONCE[:-1] + "8"}
    assert refused(verifier, renonced) == "Bad signature: signature does not verify."


def test_unknown_key_is_refused_with_the_fix(verifier, other, ssh_keys):
    headers = sign_request(other, BODY, timestamp=NOW, nonce=NONCE)
    assert refused(verifier, headers) == (
        f"Key {ssh_keys['other'].fingerprint} is not authorized; add it with tako-server authorize-key."
    )


def test_missing_authorized_keys_file_authorizes_nobody(tmp_path, signer):
    """Tako: no readable file is 'required'; an empty file is 'failed' (the key is not in it).
    The file is read after the timestamp and nonce checks, as in Tako."""
    verifier = RequestVerifier(tmp_path / "absent")
    headers = sign_request(signer, BODY, timestamp=NOW, nonce=NONCE)
    assert refused(verifier, headers, required=True) == (
        f"There is no authorized keys file ({tmp_path / 'absent'}); add a key with tako-server "
        "authorize-key.")
    assert refused(verifier, headers, now=NOW + 400).startswith("Request timestamp is 400 s old")
    (tmp_path / "absent").write_text("")
    assert refused(verifier, headers).endswith("is not authorized; add it with tako-server authorize-key.")
    (tmp_path / "absent").unlink()
    (tmp_path / "absent").mkdir()  # exists, cannot be read as a file
    assert refused(verifier, headers, required=True).startswith("Cannot read authorized keys file")


@pytest.mark.parametrize("nonce", ["a" * 15, "a" * 129, "0123456789abcdef!", "0123456789abcde f", "~" * 20])
def test_bad_nonce_format_is_refused(verifier, signer, nonce):
    headers = sign_request(signer, BODY, timestamp=NOW, nonce=nonce)
    assert (
        refused(verifier, headers)
        == "Invalid x-tako-nonce header (expected 16-128 characters of A-Za-z0-9_-)."
    )


@pytest.mark.parametrize("nonce", ["a" * 16, "Z_-9" * 32])
def test_nonce_length_limits_are_accepted(verifier, signer, nonce):
    verifier.verify(sign_request(signer, BODY, timestamp=NOW, nonce=nonce), BODY, now=NOW)


def test_signature_by_another_key_under_an_authorized_fingerprint_is_refused(
    verifier, signer, other, ssh_keys
):
    headers = sign_request(other, BODY, timestamp=NOW, nonce=NONCE)
    headers["x-tako-key-fingerprint"] = signer.fingerprint
    assert refused(verifier, headers) == (
        f"Signature was made by key {ssh_keys['other'].fingerprint}, "
        f"not by {ssh_keys['ed25519'].fingerprint}."
    )


def test_signature_relabelled_with_the_authorized_public_key_is_refused(verifier, signer, other):
    message = signed_message(str(NOW), NONCE, BODY)
    forged_sig = other.sign(sshsig.signed_data(sshsig.NAMESPACE, "sha512", message))
    blob = (
        b"SSHSIG\0\0\0\1"
        + sshwire.string(signer.public_key_blob)
        + sshwire.string(b"tako-management-rpc-v0")
        + sshwire.string(b"")
        + sshwire.string(b"sha512")
        + sshwire.string(forged_sig)
    )
    headers = sign_request(signer, BODY, timestamp=NOW, nonce=NONCE)
    headers["x-tako-signature"] = base64.b64encode(sshsig.armor(blob).encode()).decode()
    assert refused(verifier, headers) == "Bad signature: signature does not verify."


def test_wrong_namespace_is_refused(verifier, signer, ssh_keys, openssh):
    message = signed_message(str(NOW), NONCE, BODY)
    headers = sign_request(signer, BODY, timestamp=NOW, nonce=NONCE)
    for armored in (
        sshsig.sign(signer, message, namespace="file"),
        openssh.sign(ssh_keys["ed25519"], message, "git"),
    ):
        headers["x-tako-signature"] = base64.b64encode(armored.encode()).decode()
        assert refused(verifier, headers) == "Signature namespace is not tako-management-rpc-v0."


def test_sha1_rsa_signature_is_refused_but_rsa_sha2_256_is_accepted(tmp_path, ssh_keys):
    key = ssh_keys["rsa2048"]
    keys_file = tmp_path / "keys"
    keys_file.write_text(key.pub_line + "\n")
    verifier = RequestVerifier(keys_file)
    private = serialization.load_ssh_private_key(key.path.read_bytes(), None)

    class LegacyRsa:
        description = "legacy"
        public_key_blob = key.blob

        def __init__(self, alg: str, digest: hashes.HashAlgorithm) -> None:
            self.alg, self.digest = alg, digest

        def sign(self, data: bytes) -> bytes:
            return sshwire.string(self.alg) + sshwire.string(
                private.sign(data, padding.PKCS1v15(), self.digest)
            )

    sha1 = sign_request(LegacyRsa("ssh-rsa", hashes.SHA1()), BODY, timestamp=NOW, nonce=NONCE)
    assert (
        refused(verifier, sha1) == "Bad signature: signature algorithm ssh-rsa is not accepted for RSA keys."
    )
    sha256 = sign_request(LegacyRsa("rsa-sha2-256", hashes.SHA256()), BODY, timestamp=NOW, nonce=NONCE)
    assert verifier.verify(sha256, BODY, now=NOW).key_type == "ssh-rsa"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not base64!", "x-tako-signature header is not base64 of an armored SSH signature."),
        (base64.b64encode(b"hello").decode(), "Signature is not an armored SSH signature."),
        (
            base64.b64encode(sshsig.armor(b"SSHSIG\0\0\0\2").encode()).decode(),
            "Signature version 2 is not supported.",
        ),
        (base64.b64encode(sshsig.armor(b"SSHSIG\0\0\0\1\0\0").encode()).decode(), "Signature is malformed."),
        ("A" * 40000, "x-tako-signature header is too long."),
    ],
)
def test_garbage_signature_headers_are_refused(verifier, signer, value, message):
    headers = {**sign_request(signer, BODY, timestamp=NOW, nonce=NONCE), "x-tako-signature": value}
    assert refused(verifier, headers) == message


def test_bad_fingerprint_header_is_refused_without_echoing_it(verifier, signer):
    headers = {
        **sign_request(signer, BODY, timestamp=NOW, nonce=NONCE),
        "x-tako-key-fingerprint": "MD5:<script>",
    }
    assert (
        refused(verifier, headers)
        == "Invalid x-tako-key-fingerprint header (expected SHA256:<43 base64 chars>)."
    )


def test_header_names_are_case_insensitive_and_duplicates_refused(verifier, signer):
    headers = sign_request(signer, BODY, timestamp=NOW, nonce=NONCE)
    verifier.verify({name.upper(): value for name, value in headers.items()}, BODY, now=NOW)
    raw = [(k.encode(), v.encode()) for k, v in headers.items()] + [(b"X-Tako-Nonce", b"f" * 32)]
    assert refused(verifier, Headers(raw=raw)) == "Duplicate x-tako-nonce header."


def test_nonce_is_recorded_only_after_the_signature_verifies(verifier, signer, other):
    forged = sign_request(other, BODY, timestamp=NOW, nonce=NONCE)
    forged["x-tako-key-fingerprint"] = signer.fingerprint
    refused(verifier, forged)
    tampered = sign_request(signer, BODY, timestamp=NOW, nonce=NONCE)
    refused(verifier, tampered, body=b"{}")
    verifier.verify(tampered, BODY, now=NOW)


def test_replay_cache_is_bounded_and_forgets_expired_nonces(keys_file, signer):
    verifier = RequestVerifier(keys_file, max_nonces=2)
    for i in range(2):
        verifier.verify(sign_request(signer, BODY, timestamp=NOW, nonce=f"nonce-{i:011d}"), BODY, now=NOW)
    third = sign_request(signer, BODY, timestamp=NOW, nonce="nonce-third-00000")
    assert refused(verifier, third) == "Too many signed requests in the replay window; try again shortly."
    later = NOW + 301
    assert verifier.verify(
        sign_request(signer, BODY, timestamp=later, nonce="nonce-third-00000"), BODY, now=later
    )
    assert len(verifier._nonces) == 1


def test_authorized_keys_file_changes_are_picked_up(keys_file, verifier, signer, other, ssh_keys):
    headers = sign_request(other, BODY, timestamp=NOW, nonce="first-request-0001")
    assert "is not authorized" in refused(verifier, headers)
    with keys_file.open("a") as handle:
        handle.write(f'from="127.0.0.1",command="echo a b" {ssh_keys["other"].pub_line}\n')
    assert verifier.verify(headers, BODY, now=NOW).fingerprint == ssh_keys["other"].fingerprint
    replacement = keys_file.with_name("replacement")
    replacement.write_text(f"{ssh_keys['other'].pub_line}\n")
    os.replace(replacement, keys_file)
    headers = sign_request(signer, BODY, timestamp=NOW, nonce="second-request-001")
    assert refused(verifier, headers) == (
        f"Key {ssh_keys['ed25519'].fingerprint} is not authorized; add it with tako-server authorize-key."
    )
    assert [key.fingerprint for key in verifier.authorized_keys()] == [ssh_keys["other"].fingerprint]
