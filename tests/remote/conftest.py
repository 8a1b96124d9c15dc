"""Fixtures for the signing tests: SSH keys made by ssh-keygen, OpenSSH helpers, a real ssh-agent."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tako_backups.remote.signing import FileSigner
from tests.support.keys import SSH_KEYGEN

SSH_AGENT = "/usr/bin/ssh-agent"
SSH_ADD = "/usr/bin/ssh-add"
NAMESPACE = "tako-management-rpc-v0"

KEY_SPECS = {
    "ed25519": ["-t", "ed25519"],
    "rsa2048": ["-t", "rsa", "-b", "2048"],
    "rsa3072": ["-t", "rsa", "-b", "3072"],
    "ecdsa256": ["-t", "ecdsa", "-b", "256"],
    "ecdsa384": ["-t", "ecdsa", "-b", "384"],
    "ecdsa521": ["-t", "ecdsa", "-b", "521"],
    "other": ["-t", "ed25519"],
}


@dataclass(frozen=True)
class SshKey:
    """A key pair written by ssh-keygen, with what OpenSSH itself says about it."""

    name: str
    path: Path
    pub_line: str
    fingerprint: str
    label: str

    @property
    def blob(self) -> bytes:
        return base64.b64decode(self.pub_line.split()[1])


def keygen(
    path: Path, spec: list[str], passphrase: str = "", comment: str = "test"
) -> subprocess.Popen[bytes]:
    return subprocess.Popen([SSH_KEYGEN, "-q", "-N", passphrase, "-C", comment, *spec, "-f", str(path)])


def describe_key(name: str, path: Path) -> SshKey:
    pub_line = path.with_name(path.name + ".pub").read_text().strip()
    listing = subprocess.run([SSH_KEYGEN, "-lf", f"{path}.pub"], check=True, capture_output=True, text=True)
    words = listing.stdout.split()
    return SshKey(name, path, pub_line, words[1], words[-1].strip("()"))


@pytest.fixture(scope="session")
def ssh_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SshKey]:
    """One key of every supported kind (made in parallel; RSA 3072 is the slow one)."""
    folder = tmp_path_factory.mktemp("keys")
    procs = {name: keygen(folder / name, spec, comment=f"{name}@test") for name, spec in KEY_SPECS.items()}
    for proc in procs.values():
        assert proc.wait() == 0
    return {name: describe_key(name, folder / name) for name in KEY_SPECS}


class OpenSSH:
    """ssh-keygen -Y sign / verify, run as a user would."""

    def sign(self, key: SshKey, message: bytes, namespace: str = NAMESPACE, *options: str) -> str:
        extra = [arg for opt in options for arg in ("-O", opt)]
        done = subprocess.run(
            [SSH_KEYGEN, "-q", "-Y", "sign", "-n", namespace, "-f", str(key.path), *extra],
            input=message,
            capture_output=True,
            check=True,
        )
        return done.stdout.decode("ascii")

    def verify(
        self, key: SshKey, armored: str, message: bytes, folder: Path
    ) -> subprocess.CompletedProcess[str]:
        allowed = folder / "allowed_signers"
        allowed.write_text(f'tester namespaces="{NAMESPACE}" {key.pub_line}\n')
        sig = folder / "message.sig"
        sig.write_text(armored)
        return subprocess.run(
            [SSH_KEYGEN, "-Y", "verify", "-f", str(allowed), "-I", "tester", "-n", NAMESPACE, "-s", str(sig)],
            input=message.decode("latin-1"),
            capture_output=True,
            text=True,
        )


@pytest.fixture(scope="session")
def openssh() -> OpenSSH:
    return OpenSSH()


@dataclass
class Agent:
    """A real ssh-agent on a private socket."""

    socket_path: str
    process: subprocess.Popen[bytes]

    def add(self, key: SshKey | Path) -> None:
        path = key.path if isinstance(key, SshKey) else key
        env = {**os.environ, "SSH_AUTH_SOCK": self.socket_path}
        subprocess.run([SSH_ADD, "-q", str(path)], env=env, check=True, capture_output=True)


@pytest.fixture
def ssh_agent() -> Iterator[Agent]:
    """Start ``ssh-agent -D -a <socket>`` (short path: sockets have a 108-byte limit); kill it after."""
    folder = tempfile.mkdtemp(prefix="tako-agent-", dir="/tmp")
    socket_path = os.path.join(folder, "agent.sock")
    process = subprocess.Popen(
        [SSH_AGENT, "-D", "-a", socket_path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(socket_path):
            assert process.poll() is None, "ssh-agent exited early"
            assert time.monotonic() < deadline, "ssh-agent did not create its socket"
            time.sleep(0.01)
        yield Agent(socket_path, process)
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def make_key(tmp_path: Path):
    """Make a key with ssh-keygen in tmp_path: ``make_key("id_rsa", "-t", "rsa", passphrase="pw")``."""

    def make(name: str, *spec: str, passphrase: str = "") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        assert keygen(path, list(spec), passphrase=passphrase, comment=f"{name}@test").wait() == 0
        return path

    return make


@pytest.fixture
def signer(ssh_keys: dict[str, SshKey]) -> FileSigner:
    """The authorized client key of this suite: the ed25519 key of ``ssh_keys`` (its
    ``pub_line`` is what the suite's authorized-keys files hold)."""
    return FileSigner.load(ssh_keys["ed25519"].path)
