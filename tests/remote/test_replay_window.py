"""A signed request works once for as long as its timestamp can pass: the timestamp check and the
nonce memory use one clock in whole seconds (a fake clock here)."""

from __future__ import annotations

import pytest

from tako_backups.errors import AuthError
from tako_backups.remote.signing import RequestVerifier, sign_request

NOW = 1_710_000_000
BODY = b'{"command":"list_backups","app":"demo/production"}'
NONCE = "00112233445566778899aabbccddeeff0011223344556677"
REPLAYED = "Nonce was already used (replayed request)."


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def keys_file(tmp_path, ssh_keys):
    path = tmp_path / "management-authorized-keys"
    path.write_text(f"{ssh_keys['ed25519'].pub_line}\n")
    return path


def replay_refusal(verifier: RequestVerifier, headers: dict[str, str],
                   now: float | None = None) -> str | None:
    """The refusal message, or None when the request was accepted."""
    try:
        verifier.verify(headers, BODY, now=now)
    except AuthError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("offset", [299, 300, 0, -299, -300])
@pytest.mark.parametrize("fraction", [0.0, 0.999])
def test_a_request_is_refused_at_every_second_its_timestamp_still_passes(keys_file, signer, offset,
                                                                          fraction):
    clock = FakeClock(NOW + fraction)
    verifier = RequestVerifier(keys_file, clock=clock)
    headers = sign_request(signer, BODY, timestamp=NOW + offset, nonce=NONCE)
    assert replay_refusal(verifier, headers) is None
    last_second = NOW + offset + 300
    for second in range(NOW, last_second + 1):
        for sub in (0.0, 0.999):
            clock.now = second + sub
            assert replay_refusal(verifier, headers) == REPLAYED, (second - NOW, sub)
    clock.now = last_second + 1
    stale = "Request timestamp is 301 s old (limit 300 s); check the clock."
    assert replay_refusal(verifier, headers) == stale


def test_a_request_stamped_299_s_ahead_cannot_be_replayed_600_s_later(keys_file, signer):
    """The reported case: seen at NOW + 0.9, forgotten at a float deadline of NOW + 599 while the
    timestamp check (whole seconds) still passed during the second NOW + 599."""
    verifier = RequestVerifier(keys_file)
    headers = sign_request(signer, BODY, timestamp=NOW + 299, nonce=NONCE)
    assert replay_refusal(verifier, headers, now=NOW + 0.9) is None
    assert replay_refusal(verifier, headers, now=NOW + 599.5) == REPLAYED


def test_nonces_are_forgotten_once_their_timestamp_can_no_longer_pass(keys_file, signer):
    clock = FakeClock(NOW)
    verifier = RequestVerifier(keys_file, clock=clock)
    verifier.verify(sign_request(signer, BODY, timestamp=NOW - 300, nonce=NONCE), BODY)
    verifier.verify(sign_request(signer, BODY, timestamp=NOW, nonce="a-second-nonce-0001"), BODY)
    assert verifier.remembered_nonces() == 2
    clock.now = NOW + 1
    verifier.verify(sign_request(signer, BODY, timestamp=NOW + 1, nonce="a-third-nonce-00001"), BODY)
    assert verifier.remembered_nonces() == 2
