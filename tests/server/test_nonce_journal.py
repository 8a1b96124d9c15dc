"""Used nonces survive a restart: the journal in the state dir is durable, bounded and crash-safe."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tako_backups.errors import AuthError, ConfigError
from tako_backups.remote.signing import FileSigner, RequestVerifier, sign_request
from tako_backups.server.auth import RequestAuth
from tako_backups.server.nonce_journal import NonceFile

NOW = 1_710_000_000
BODY = b'{"command":"list_backups","app":"demo/production"}'
REPLAYED = "Nonce was already used (replayed request)."


@pytest.fixture
def keys_file(tmp_path: Path, signer: FileSigner) -> Path:
    path = tmp_path / "management-authorized-keys"
    path.write_text(Path(f"{signer.path}.pub").read_text())
    return path


def verifier(keys_file: Path, journal: Path, now: float) -> RequestVerifier:
    """A freshly started server's verifier."""
    return RequestVerifier(keys_file, journal=NonceFile(journal), clock=lambda: now)


def nonce(i: int) -> str:
    return f"nonce-{i:012d}"


def test_a_request_seen_before_a_restart_is_refused_after_it(tmp_path, keys_file, signer):
    journal = tmp_path / "state" / "seen-nonces"
    headers = sign_request(signer, BODY, timestamp=NOW + 299, nonce=nonce(1))
    verifier(keys_file, journal, NOW).verify(headers, BODY)
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    for later in (NOW + 1, NOW + 598.9):
        with pytest.raises(AuthError) as caught:
            verifier(keys_file, journal, later).verify(headers, BODY)
        assert str(caught.value) == REPLAYED


def test_the_server_auth_keeps_nonces_in_the_given_file(tmp_path, keys_file, signer):
    journal = tmp_path / "seen-nonces"
    headers = sign_request(signer, BODY, nonce=nonce(2))
    RequestAuth.from_file(keys_file, journal).check(headers, BODY)
    with pytest.raises(AuthError, match="replayed"):
        RequestAuth.from_file(keys_file, journal).check(headers, BODY)


def test_a_restart_keeps_only_the_nonces_that_could_still_replay(tmp_path, keys_file, signer):
    journal = tmp_path / "seen-nonces"
    first = verifier(keys_file, journal, NOW)
    first.verify(sign_request(signer, BODY, timestamp=NOW - 300, nonce=nonce(1)), BODY)
    first.verify(sign_request(signer, BODY, timestamp=NOW, nonce=nonce(2)), BODY)
    assert len(journal.read_text().splitlines()) == 2
    restarted = verifier(keys_file, journal, NOW + 1)
    assert restarted.remembered_nonces() == 1
    assert journal.read_text() == f"{NOW + 300} {nonce(2)}\n"


def test_a_line_torn_by_a_crash_is_skipped_and_the_next_line_stays_whole(tmp_path, keys_file, signer):
    journal = tmp_path / "seen-nonces"
    journal.write_text(f"{NOW + 300} {nonce(1)}\n{NOW + 300} nonce-0000")
    restarted = verifier(keys_file, journal, NOW)
    assert restarted.remembered_nonces() == 1
    headers = sign_request(signer, BODY, timestamp=NOW, nonce=nonce(3))
    restarted.verify(headers, BODY)
    with pytest.raises(AuthError, match="replayed"):
        verifier(keys_file, journal, NOW).verify(headers, BODY)


def test_after_a_failed_append_the_next_record_starts_on_its_own_line(tmp_path):
    path = tmp_path / "seen-nonces"
    path.symlink_to("/dev/full")  # every write fails with ENOSPC
    journal = NonceFile(path)
    with pytest.raises(ConfigError, match="Cannot record the request nonce .*No space left on device"):
        journal.append(nonce(1), NOW)
    journal.close()
    path.unlink()
    path.write_text(f"{NOW} {nonce(0)}\n{NOW} nonce-0")  # what a write cut short leaves
    journal.append(nonce(2), NOW)
    assert NonceFile(path).load() == [(nonce(0), NOW), (nonce(2), NOW)]


def test_the_journal_is_compacted_while_the_server_runs(tmp_path, keys_file, signer):
    journal = tmp_path / "seen-nonces"
    clock = {"now": float(NOW)}
    running = RequestVerifier(keys_file, skew=10, journal=NonceFile(journal), clock=lambda: clock["now"])
    for i in range(1100):
        clock["now"] = NOW + i  # one request a second: 11 live nonces at any time
        running.verify(sign_request(signer, BODY, timestamp=NOW + i, nonce=nonce(i)), BODY)
    assert running.remembered_nonces() == 11
    assert len(journal.read_text().splitlines()) < 1100 - 1000  # rewritten after 1025 appends
    with pytest.raises(AuthError, match="replayed"):
        verifier(keys_file, journal, clock["now"]).verify(
            sign_request(signer, BODY, timestamp=NOW + 1099, nonce=nonce(1099)), BODY)


def test_an_unwritable_journal_refuses_the_request(tmp_path, keys_file, signer):
    journal = tmp_path / "state" / "seen-nonces"
    running = verifier(keys_file, journal, NOW)
    journal.unlink()
    journal.mkdir()  # the next append cannot open the file
    with pytest.raises(ConfigError, match="Cannot record the request nonce"):
        running.verify(sign_request(signer, BODY, timestamp=NOW, nonce=nonce(5)), BODY)
    assert running.remembered_nonces() == 0
