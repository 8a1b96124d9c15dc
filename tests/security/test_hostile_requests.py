"""Hostile requests against the real RPC app in-process (Starlette TestClient), fuzzed with
hypothesis: every reply is JSON with Tako's exact error bodies -- 400 ``invalid command`` for
anything that does not parse, 401 ``management auth required``/``failed`` and nothing else for a
signature that does not hold, 200 only for the unsigned ``hello``/``server_info`` -- never a 500
or a traceback; nothing changes without a valid signature; the body size limit holds (413); the
nonce cache stays bounded under a flood."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from tako_backups.errors import AuthError
from tako_backups.remote import signing, sshsig
from tako_backups.remote.protocol import COMMANDS, MAX_BODY_BYTES
from tako_backups.remote.signing import FileSigner, RequestVerifier, sign_request
from tako_backups.server.app import create_app
from tako_backups.server.auth import RequestAuth
from tako_backups.server.cli import authorize_key
from tako_backups.server.paths import ServerPaths
from tako_backups.server.service import BackupService
from tako_backups.server.state import AppState
from tako_backups.storage.memory import MemoryStore
from tests.server.helpers import APP, binding
from tests.support.asgi import AsgiClient

EXAMPLES = 300
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
PUBLIC = {"hello", "server_info"}
SIDE_EFFECT_COMMANDS = ["backup_now", "restore_backup", "deploy"]


@dataclass
class Server:
    client: AsgiClient
    paths: ServerPaths
    store: MemoryStore
    verifier: RequestVerifier
    backup_id: str

    def fingerprint(self) -> dict[str, Any]:
        """Everything a request could change: files under the data root and the bucket."""
        files = {}
        for path in sorted(self.paths.root.rglob("*")):
            if path.is_file():
                files[str(path.relative_to(self.paths.root))] = hashlib.sha256(path.read_bytes()).hexdigest()
        objects = {k: hashlib.sha256(v).hexdigest() for k, v in sorted(self.store.objects.items())}
        return {"files": files, "objects": objects, "nonces": len(self.verifier._nonces)}


@contextmanager
def running_server(root: Path, signer: FileSigner, max_nonces: int = 100_000) -> Iterator[Server]:
    """A data root with one app, its settings and one backup (live data changed since), served
    in-process with a verifier holding at most ``max_nonces`` nonces."""
    paths = ServerPaths(root)
    paths.prepare()
    authorize_key(Path(f"{signer.path}.pub"), paths.root)
    store = MemoryStore()
    service = BackupService(paths, "la", store_factory=lambda b: store)
    settings_ = binding()
    service.state.save(APP, AppState(backup=settings_))
    live = paths.ensure_data_dir("demo", "production")
    (live / "app" / "notes.txt").write_text("the live data\n")
    info = service.backup_now(APP, None)
    (live / "app" / "notes.txt").write_text("changed since the backup\n")
    verifier = RequestVerifier(paths.authorized_keys, max_nonces=max_nonces)
    app = create_app(service, RequestAuth(verifier))
    with AsgiClient(app) as client:
        yield Server(client, paths, store, verifier, info["id"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, signer: FileSigner) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("fuzz") / "tako", signer) as running:
        yield running


def post(server: Server, data: bytes, headers: dict[str, str] | None = None) -> Any:
    return server.client.post("/rpc", content=data, headers=headers or {})


INVALID_COMMAND = b'{"message":"invalid command","status":"error"}'
AUTH_REFUSALS = {b'{"status":"error","message":"management auth required"}',
                 b'{"status":"error","message":"management auth failed"}'}


def assert_clean_reply(reply: Any, allowed: set[int]) -> dict[str, Any]:
    assert reply.status_code in allowed, (reply.status_code, reply.text[:500])
    assert "Traceback" not in reply.text and 'File "' not in reply.text
    assert (reply.headers["content-type"], reply.headers["cache-control"]) == ("application/json", "no-store")
    obj = json.loads(reply.content)
    if reply.status_code == 200:
        assert reply.content.startswith(b'{"status":"ok","data":') and set(obj) <= {"status", "data",
                                                                                      "safety_backup_id"}
    elif reply.status_code == 401:
        assert reply.content in AUTH_REFUSALS
    elif reply.content != INVALID_COMMAND:  # a command that parsed and failed: Tako's status-first shape
        assert reply.content.startswith(b'{"status":"error","message":"')
        assert set(obj) == {"status", "message"}
        assert isinstance(obj["message"], str) and obj["message"] and "\n" not in obj["message"]
    return obj


# ----- strategies -----

# Text with what breaks naive code: lone surrogates (valid JSON "\\udce9" escapes), NUL, newlines,
# terminal escapes, right-to-left marks, long runs.
TRICKY = ["\udce9", "\ud800", "\x00", "\n", "\r\n", "\x1b[2J", "\u202e", "\u00e9", "'", '"', "\\", "%s",
          "../", "x" * 300]
texts = st.lists(st.sampled_from(TRICKY) | st.text(max_size=8), max_size=5).map("".join)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
apps = st.sampled_from([APP, "demo/staging", "../etc/production", "", "DEMO/production"]) | texts
backup_ids = st.just("b1710000000-AbCdEf12") | texts


@st.composite
def request_objects(draw: st.DrawFn) -> dict[str, Any]:
    """JSON objects shaped like requests: a real or fake command, real field names with valid
    or hostile values, sometimes extra fields."""
    command = draw(st.sampled_from(sorted(COMMANDS)) | st.text(max_size=20) | json_values)
    obj: dict[str, Any] = {"command": command}
    if draw(st.booleans()):
        obj["protocol_version"] = draw(st.sampled_from([0, 1, -1, 2**32, 0.0, "0", True, None]) | json_values)
    if draw(st.booleans()):
        obj["app"] = draw(apps | json_values)
    if draw(st.booleans()):
        obj["backup_id"] = draw(backup_ids | json_values)
    if draw(st.booleans()):
        obj["backup"] = draw(st.none() | st.just(binding().to_dict()) | json_values)
    if draw(st.booleans()):
        obj["runtime"] = draw(st.none() | st.just({"start": ["/bin/true"], "instances": 1}) | json_values)
    if draw(st.booleans()):
        obj.update(draw(st.dictionaries(st.text(max_size=10), json_values, max_size=3)))
    return obj


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [path] + [leaf for k, v in value.items() for leaf in _leaves(v, (*path, k))]
    if isinstance(value, list):
        return [path] + [leaf for i, v in enumerate(value) for leaf in _leaves(v, (*path, i))]
    return [path]


@st.composite
def shaped_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed request for a real command with one value (anywhere, nested too) replaced."""
    command = draw(st.sampled_from(sorted(COMMANDS)))
    required, optional = COMMANDS[command]
    obj: dict[str, Any] = {"command": command}
    if "app" in required:
        obj["app"] = APP
    if "backup_id" in required:
        obj["backup_id"] = "b1710000000-AbCdEf12"
    if "protocol_version" in required:
        obj["protocol_version"] = 0
    if "backup" in optional and draw(st.booleans()):
        obj["backup"] = binding().to_dict()
    if "runtime" in optional and draw(st.booleans()):
        obj["runtime"] = {"start": ["/bin/true"], "instances": 0, "env": {"NAME": "value"}}
    spots = [p for p in _leaves(obj) if p and p[0] != "command"]
    if spots:
        *parent, last = draw(st.sampled_from(spots))
        holder: Any = obj
        for step in parent:
            holder = holder[step]
        holder[last] = draw(json_scalars | json_values)
    return obj


def _raw_utf8(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _nested(depth: int, opener: bytes) -> bytes:
    """A valid ``server_info`` body whose unknown field ``x`` brings the nesting to ``depth``
    containers (the body itself is the first)."""
    prefix = b'{"command":"server_info","x":'
    if opener == b"{":
        return prefix + b'{"x":' * (depth - 2) + b'{"x":1}' + b"}" * (depth - 1)
    return prefix + b"[" * (depth - 1) + b"1" + b"]" * (depth - 1) + b"}"


# Bodies serde_json refuses and Python's json would take, or that once broke the server.
serde_refuses = st.sampled_from([
    b"[" * 100_000, b"{" * 100_000, b'{"a":' * 50_000, b"\xef\xbb\xbf" + b'{"command":"server_info"}',
    b'{"command":"server_info","x":NaN}', b'{"command":"server_info","x":-Infinity}',
    b'{"command":"server_info","x":1e400}', b'{"command":"server_info","x":"\\ud800"}',
    b'{"command":"server_info","x":"\xed\xa0\x80"}', b'{"command":"server_info","command":"hello"}',
    b'{"command":"server_info"} {}', b"\xff\xfe{\x00}\x00", "{\"command\":\"server_info\"}".encode("utf-16"),
]) | st.integers(128, 400).map(lambda depth: _nested(depth, b"[")) \
    | st.integers(128, 400).map(lambda depth: _nested(depth, b"{"))

bodies = (st.binary(max_size=600) | json_values.map(lambda v: json.dumps(v).encode())
          | request_objects().map(lambda o: json.dumps(o).encode()) | request_objects().map(_raw_utf8)
          | serde_refuses)
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120)


@st.composite
def auth_headers(draw: st.DrawFn, signer: FileSigner) -> dict[str, str]:
    """x-tako-* headers that look plausible or not, never a valid signature of the body."""
    choices = {
        "x-tako-key-fingerprint": st.just(signer.fingerprint) | header_text,
        "x-tako-timestamp": st.integers(-1000, 1000).map(lambda d: str(int(time.time()) + d)) | header_text,
        "x-tako-nonce": st.just(secrets.token_hex(24)) | header_text,
        "x-tako-signature": st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()) | header_text,
    }
    headers = {name: draw(value) for name, value in choices.items() if draw(st.booleans())}
    headers.update(draw(st.dictionaries(st.sampled_from(["content-type", "x-tako-extra", "X-Tako-Nonce"]),
                                        header_text, max_size=2)))
    return headers


def same_signature(armored: bytes, other: bytes) -> bool:
    """Whether two armored signatures hold the same SSHSIG blob (spelled differently)."""
    try:
        return sshsig.dearmor(armored.decode("latin-1")) == sshsig.dearmor(other.decode("latin-1"))
    except AuthError:
        return False


# ----- properties -----

@FUZZ
@given(data=st.data())
def test_unsigned_or_badly_signed_requests_get_400_or_401_and_change_nothing(
        server: Server, signer: FileSigner, data: st.DataObject) -> None:
    body = data.draw(bodies, label="body")
    headers = data.draw(auth_headers(signer), label="headers")
    before = server.fingerprint()
    reply = post(server, body, headers)
    assert_clean_reply(reply, {200, 400, 401})
    if reply.status_code != 401 and reply.content != INVALID_COMMAND:  # it parsed, and needs no signature
        assert json.loads(body)["command"] in PUBLIC
    assert server.fingerprint() == before


@FUZZ
@given(body=serde_refuses)
def test_what_serde_json_refuses_is_an_invalid_command_before_auth(server: Server, body: bytes) -> None:
    reply = post(server, body)
    assert (reply.status_code, reply.content) == (400, INVALID_COMMAND)


@FUZZ
@given(data=st.data())
def test_tampered_signed_requests_are_refused_and_change_nothing(
        server: Server, signer: FileSigner, stranger: FileSigner, data: st.DataObject) -> None:
    """A valid signature with one thing changed: body, timestamp, nonce, key or signature."""
    command = data.draw(st.sampled_from(SIDE_EFFECT_COMMANDS), label="command")
    fields: dict[str, Any] = {"app": APP}
    if command == "restore_backup":
        fields["backup_id"] = server.backup_id
    if command == "deploy":
        fields["runtime"] = None
    body = json.dumps({"command": command, **fields}).encode()
    headers = sign_request(signer, body)
    what = data.draw(st.sampled_from(["body", "timestamp", "nonce", "fingerprint", "signature", "stranger",
                                      "stale", "replay-of-other"]), label="tamper")
    if what == "body":
        at = data.draw(st.integers(0, len(body) - 1))
        body = body[:at] + bytes([body[at] ^ data.draw(st.integers(1, 255))]) + body[at + 1:]
    elif what == "timestamp":
        headers["x-tako-timestamp"] = str(int(headers["x-tako-timestamp"]) + data.draw(st.integers(1, 200)))
    elif what == "nonce":
        headers["x-tako-nonce"] = secrets.token_hex(24)
    elif what == "fingerprint":
        headers["x-tako-key-fingerprint"] = stranger.fingerprint
    elif what == "signature":
        raw = bytearray(base64.b64decode(headers["x-tako-signature"]))
        at = data.draw(st.integers(0, len(raw) - 1))
        original = bytes(raw)
        raw[at] ^= data.draw(st.integers(1, 255))
        headers["x-tako-signature"] = base64.b64encode(bytes(raw)).decode()
        assume(not same_signature(original, bytes(raw)))  # armor whitespace is not tampering
    elif what == "stranger":
        headers = sign_request(stranger, body)
    elif what == "stale":
        headers = sign_request(signer, body, timestamp=int(time.time()) - data.draw(st.integers(301, 10**6)))
    else:
        other = sign_request(signer, b'{"command":"list_backups","app":"demo/production"}')
        headers["x-tako-signature"] = other["x-tako-signature"]
    before = server.fingerprint()
    reply = post(server, body, {"content-type": "application/json", **headers})
    assert_clean_reply(reply, {400, 401})
    assert server.fingerprint() == before


@pytest.fixture(scope="module")
def signed_server(tmp_path_factory: pytest.TempPathFactory, signer: FileSigner) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("signed-fuzz") / "tako", signer) as running:
        yield running


@FUZZ
@given(obj=shaped_requests() | request_objects())
@example(obj={"command": "restore_backup", "app": APP, "backup_id": "\udce9"})
@example(obj={"command": "backup_download_url", "app": APP, "backup_id": "b1\nforged log line"})
@example(obj={"command": "backup_now", "app": APP,
              "backup": {**binding().to_dict(),
                         "storage": {**binding().storage.to_dict(), "provider": "\ud800"}}})
def test_signed_malformed_requests_get_400_never_500(signed_server: Server, signer: FileSigner,
                                                     obj: dict[str, Any]) -> None:
    """A trusted client sending nonsense still gets a one-line 400 (or its 200), never a crash."""
    body = json.dumps(obj).encode()
    reply = post(signed_server, body, {"content-type": "application/json", **sign_request(signer, body)})
    assert_clean_reply(reply, {200, 400})


# ----- body size -----

TOO_LARGE = b'{"message":"request body too large","status":"error"}'


def test_body_over_the_limit_is_refused_unsigned_or_signed(server: Server, signer: FileSigner) -> None:
    big = json.dumps({"command": "hello", "protocol_version": 0, "pad": "x" * MAX_BODY_BYTES}).encode()
    before = server.fingerprint()
    for headers in ({}, sign_request(signer, big)):
        reply = post(server, big, headers)
        assert (reply.status_code, reply.content) == (413, TOO_LARGE)
    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]

    chunked = server.client.post("/rpc", content=pieces())
    assert "content-length" not in chunked.request.headers
    assert (chunked.status_code, chunked.content) == (413, TOO_LARGE)
    assert server.fingerprint() == before
    hello = b'{"command":"hello","protocol_version":0}'
    at_limit = hello + b" " * (MAX_BODY_BYTES - len(hello))
    assert len(at_limit) == MAX_BODY_BYTES
    assert post(server, at_limit).status_code == 200
    assert post(server, at_limit + b" ").status_code == 413


# ----- the replay cache under a flood -----

class Clock:
    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def time(self) -> float:
        return self.now


def test_nonce_cache_stays_bounded_under_a_flood(tmp_path: Path, signer: FileSigner,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(signing, "time", clock)
    with running_server(tmp_path / "tako", signer, max_nonces=32) as flooded:
        body = json.dumps({"command": "list_backups", "app": APP}).encode()

        def call() -> Any:
            return post(flooded, body, {"content-type": "application/json",
                                        **sign_request(signer, body, timestamp=int(clock.now))})

        bad = sign_request(signer, b"another body", timestamp=int(clock.now))
        for _ in range(500):  # a flood of forged requests takes no room in the cache
            bad["x-tako-nonce"] = secrets.token_hex(24)
            assert post(flooded, body, bad).status_code == 401
        assert len(flooded.verifier._nonces) == 0
        statuses = [call().status_code for _ in range(100)]
        assert statuses == [200] * 32 + [401] * 68
        assert len(flooded.verifier._nonces) == 32
        refused = call()
        assert refused.content == b'{"status":"error","message":"management auth failed"}'  # full: logged
        replay = sign_request(signer, body, timestamp=int(clock.now))
        clock.now += 301
        statuses = [call().status_code for _ in range(40)]
        assert statuses == [200] * 32 + [401] * 8 and len(flooded.verifier._nonces) == 32
        assert post(flooded, body, {"content-type": "application/json", **replay}).status_code == 401
        clock.now += 301
        for step in range(40):  # steady traffic, one call every 30 s: at most 11 live nonces
            clock.now += 30
            assert call().status_code == 200, step
            assert len(flooded.verifier._nonces) <= 11


def test_replayed_request_is_refused_after_it_ran_once(server: Server, signer: FileSigner) -> None:
    body = json.dumps({"command": "backup_status", "app": APP}).encode()
    headers = {"content-type": "application/json", **sign_request(signer, body)}
    assert post(server, body, headers).status_code == 200
    again = post(server, body, headers)
    assert (again.status_code, again.content) == (
        401, b'{"status":"error","message":"management auth failed"}')
