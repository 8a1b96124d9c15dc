"""A compromised app cannot use tako-server's rights: a real `tako-server serve`, run as root (as
CI runs), with the notes app and a probe app whose start command tries to reach what it must not.

The probe writes, into its own data dir, what each attempt gave (``ok`` or the errno's name);
the test then reads that record and the apps' ``/proc`` entries. A backup and a restore work as
before, and the restored tree belongs to the app again.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
from pathlib import Path

import pytest

from tako_backups.models import BackupBinding
from tako_backups.remote.signing import FileSigner
from tako_backups.server.app_users import APP_IDS, APP_PATH, DEFAULT_APP_USER
from tako_backups.server.tls import ensure_identity
from tests.support.tako_server import (
    APP_PYTHON,
    NOTES_RUNTIME,
    RunningServer,
    app_pids,
    authorize,
    notes,
    restart_server,
    server_env,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

# Reads argv: data root, the notes app's pid, tako-server's pid. Each attempt records "ok" or
# the errno name; the record lands in the probe's own data dir (proving it may write there).
PROBE = r"""
import errno, json, os, sys, time
root, notes_pid, server_pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
notes = os.path.join(root, "apps", "notes", "production", "data")
def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
def read(path):
    return lambda: open(path, "rb").read(1)
def append(path):
    return lambda: open(path, "ab").close()
tried = {
    "read state/server.key": read(os.path.join(root, "state", "server.key")),
    "read state/app-ids.json": read(os.path.join(root, "state", "app-ids.json")),
    "read management-authorized-keys": read(os.path.join(root, "management-authorized-keys")),
    "append management-authorized-keys": append(os.path.join(root, "management-authorized-keys")),
    "read tls/key.pem": read(os.path.join(root, "tls", "key.pem")),
    "read identity.key": read(os.path.join(root, "identity.key")),
    "read logs/notes.production.log": read(os.path.join(root, "logs", "notes.production.log")),
    "read notes app/notes.db": read(os.path.join(notes, "app", "notes.db")),
    "write into notes app/": append(os.path.join(notes, "app", "planted.txt")),
    "list the data root": lambda: os.listdir(root),
    "list apps/": lambda: os.listdir(os.path.join(root, "apps")),
    "list notes through /proc/<pid>/cwd": lambda: os.listdir(f"/proc/{notes_pid}/cwd"),
    "read tako-server's environment": read(f"/proc/{server_pid}/environ"),
    "signal the notes app": lambda: os.kill(notes_pid, 0),
    "signal tako-server": lambda: os.kill(server_pid, 0),
}
record = {what: attempt(fn) for what, fn in tried.items()}
record["uid"], record["gid"], record["groups"] = os.getuid(), os.getgid(), sorted(os.getgroups())
mine = os.path.join(os.environ["TAKO_DATA_DIR"], "probe.json")
with open(mine + ".tmp", "w") as out:
    json.dump(record, out)
os.rename(mine + ".tmp", mine)
while True:
    time.sleep(1)
"""

DENIED = {
    "read state/server.key": "EACCES",
    "read state/app-ids.json": "EACCES",
    "read management-authorized-keys": "EACCES",
    "append management-authorized-keys": "EACCES",
    "read tls/key.pem": "EACCES",
    "read identity.key": "EACCES",
    "read logs/notes.production.log": "EACCES",
    "read notes app/notes.db": "EACCES",
    "write into notes app/": "EACCES",
    "list the data root": "EACCES",
    "list apps/": "EACCES",
    "list notes through /proc/<pid>/cwd": "EACCES",
    "read tako-server's environment": "EACCES",
    "signal the notes app": "EPERM",
    "signal tako-server": "EPERM",
}


def proc_ids(pid: int) -> dict[str, list[int]]:
    """``Uid``, ``Gid`` (real, effective, saved, fs) and ``Groups`` from /proc/<pid>/status."""
    ids = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            ids[key] = [int(v) for v in value.split()]
    return ids


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().partition("=")[::2] for item in raw if item)


def owners(tree: Path) -> set[tuple[int, int]]:
    """The (uid, gid) of every folder and regular file under ``tree``, itself included."""
    found = {(tree.stat().st_uid, tree.stat().st_gid)}
    for path in tree.rglob("*"):
        st = path.lstat()
        if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
            found.add((st.st_uid, st.st_gid))
    return found


def test_apps_run_as_their_own_uids_and_reach_nothing_of_the_server_or_each_other(
        tmp_path: Path, signer: FileSigner, moto_settings: BackupBinding) -> None:
    assert os.geteuid() == 0, "this test checks what tako-server does as root; CI runs it as root"
    data_dir = tmp_path / "tako"
    authorize(data_dir, signer)
    ensure_identity(data_dir / "tls", "la", "127.0.0.1")  # what `serve --tls` makes: tls/key.pem
    server_environment = {**server_env(), "AWS_SECRET_ACCESS_KEY": "server-secret-never-for-apps",
                          "TAKO_SERVER_TOKEN": "never-for-apps", "LANG": "C.UTF-8"}
    server = restart_server(data_dir, signer, env=server_environment)
    try:
        check_isolation(server, signer, moto_settings)
    finally:
        assert server.terminate() == 0, server.log_tail()


def check_isolation(server: RunningServer, signer: FileSigner, settings: BackupBinding) -> None:
    root = server.data_dir
    live = root / "apps" / "notes" / "production" / "data"
    with server.client(signer) as client:
        deployed = client.call("deploy", {"app": "notes/production", "backup": settings.to_dict(),
                                          "runtime": NOTES_RUNTIME})
    assert deployed["backup"]["status"] == "created", deployed
    wait_for(lambda: len(notes(live / "app" / "notes.db")) >= 5, "the notes app to write rows")
    (notes_pid,) = app_pids(live / "app")

    account = pwd.getpwnam(DEFAULT_APP_USER)
    notes_ids = proc_ids(notes_pid)
    uid = notes_ids["Uid"][0]
    assert uid != 0 and uid in APP_IDS
    assert notes_ids["Uid"] == [uid] * 4 and notes_ids["Gid"] == [uid] * 4
    assert notes_ids["Groups"] == [account.pw_gid]
    assert environ(notes_pid) == {"PATH": APP_PATH, "HOME": str(live / "app"), "LANG": "C.UTF-8",
                                  "TAKO_DATA_DIR": str(live / "app"), "TAKO_INSTANCE": "0",
                                  "NOTES_INTERVAL": "0.02"}
    assert (stat.S_IMODE(root.stat().st_mode), root.stat().st_uid, root.stat().st_gid) == (
        0o710, 0, account.pw_gid)
    assert (stat.S_IMODE(live.stat().st_mode), live.stat().st_uid, live.stat().st_gid) == (0o710, 0, uid)
    assert owners(live / "app") == owners(live / "tako") == {(uid, uid)}

    probe = {"start": [APP_PYTHON, "-c", PROBE, str(root), str(notes_pid), str(server.process.pid)],
             "instances": 1}
    with server.client(signer) as client:
        client.call("deploy", {"app": "probe/production", "backup": None, "runtime": probe})
    record_file = root / "apps" / "probe" / "production" / "data" / "app" / "probe.json"
    wait_for(record_file.exists, "the probe app to write its record into its own data dir")
    record = json.loads(record_file.read_text())
    assert {what: record[what] for what in DENIED} == DENIED
    assert record["uid"] not in (0, uid) and record["uid"] in APP_IDS
    assert (record["gid"], record["groups"]) == (record["uid"], [account.pw_gid])
    assert record_file.stat().st_uid == record["uid"]
    assert not (live / "app" / "planted.txt").exists()

    (live / "app" / "left-by-root.txt").write_text("made by root, so owned by root\n")
    with server.client(signer) as client:
        info = client.call("backup_now", {"app": "notes/production", "backup": None})
        (live / "app" / "after-the-backup.txt").write_text("gone after the restore\n")
        assert client.call("restore_backup", {"app": "notes/production", "backup_id": info["id"]}) == info
    assert not (live / "app" / "after-the-backup.txt").exists()
    assert (live / "app" / "left-by-root.txt").read_text() == "made by root, so owned by root\n"
    assert owners(live / "app") == owners(live / "tako") == {(uid, uid)}, "the restored tree is the app's"
    assert (stat.S_IMODE(live.stat().st_mode), live.stat().st_uid, live.stat().st_gid) == (0o710, 0, uid)
    (restarted,) = app_pids(live / "app")
    assert restarted != notes_pid and proc_ids(restarted)["Uid"] == [uid] * 4
    rows = len(notes(live / "app" / "notes.db"))
    wait_for(lambda: len(notes(live / "app" / "notes.db")) > rows + 5, "the restored app to write again")
