"""Who apps run as (tako-server as root): the --app-user account, each app's own uid and gid, and
the owners a data tree gets. These run as root, as CI does: they create and remove real
accounts with useradd/userdel and change real owners."""

from __future__ import annotations

import grp
import json
import os
import pwd
import secrets
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tako_backups.errors import ConfigError
from tako_backups.server.app_users import (
    APP_IDS,
    AppAccount,
    AppIdentity,
    AppUsers,
    app_account,
    app_environment,
    check_reachable,
)
from tako_backups.server.paths import ServerPaths
from tests.support.tako_server import let_apps_reach


@pytest.fixture(autouse=True)
def as_root() -> None:
    assert os.geteuid() == 0, "these tests change owners and accounts; CI runs them as root"


@pytest.fixture
def new_user_name() -> Iterator[str]:
    """A user name that does not exist yet; the account is removed afterwards if it was made."""
    name = f"tk-{secrets.token_hex(4)}"
    yield name
    subprocess.run(["userdel", name], capture_output=True, check=False)


@pytest.fixture
def account() -> AppAccount:
    """The accounts' shared group without useradd: nogroup (65534) stands for tako-app's group."""
    return AppAccount("tako-test", 65534, grp.getgrnam("nogroup").gr_gid)


def test_missing_app_user_is_made_a_system_account_with_its_own_group(new_user_name: str) -> None:
    made = app_account(new_user_name)
    entry = pwd.getpwnam(new_user_name)
    assert made == AppAccount(new_user_name, entry.pw_uid, entry.pw_gid)
    assert 0 < entry.pw_uid < 1000, "a system account"
    assert grp.getgrgid(entry.pw_gid).gr_name == new_user_name
    assert entry.pw_shell == "/usr/sbin/nologin"
    assert not Path(entry.pw_dir).exists() or entry.pw_dir in ("/", "/nonexistent")
    assert app_account(new_user_name) == made, "an existing account is used as it is"


def test_app_user_that_cannot_be_made_names_the_command(new_user_name: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no useradd here, as /etc is read-only under the unit
    with pytest.raises(ConfigError) as refused:
        app_account(new_user_name)
    assert str(refused.value) == (
        f"The app user '{new_user_name}' does not exist and could not be created (No such file or "
        f"directory); create it with `useradd --system --user-group --no-create-home --shell "
        f"/usr/sbin/nologin {new_user_name}` and start tako-server again.")


@pytest.mark.parametrize(("name", "message"), [
    ("root", "--app-user root is root (uid 0, gid 0); apps must not run with root's rights. Name an "
             "unprivileged account (the default is tako-app)."),
    ("-rf", "--app-user '-rf' is not a valid user name: use up to 32 lowercase letters, digits, '_' and "
            "'-', starting with a letter or '_'."),
    ("Tako", "--app-user 'Tako' is not a valid user name: use up to 32 lowercase letters, digits, '_' and "
             "'-', starting with a letter or '_'."),
])
def test_root_and_bad_names_are_refused(name: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        app_account(name)
    assert str(refused.value) == message


def test_each_app_gets_its_own_id_once_and_ids_in_use_are_skipped(tmp_path: Path,
                                                                   account: AppAccount) -> None:
    ids_file = tmp_path / "app-ids.json"
    users = AppUsers(ids_file, account, ids=range(65534, 65540))  # 65534 is nobody: in use
    notes = users.identity("notes/production")
    assert notes == AppIdentity(65535, 65535, (account.gid,))
    assert users.identity("notes/staging") == AppIdentity(65536, 65536, (account.gid,))
    assert users.identity("notes") == notes, "an app without /env is {app}/production"
    assert json.loads(ids_file.read_text()) == {"notes/production": 65535, "notes/staging": 65536}
    assert stat.S_IMODE(ids_file.stat().st_mode) == 0o600
    again = AppUsers(ids_file, account, ids=range(65534, 65540))
    assert again.identity("notes/staging").uid == 65536, "ids are kept across restarts"
    assert again.identity("blog/production").uid == 65537


def test_invalid_or_full_id_map_is_refused_with_the_fix(tmp_path: Path, account: AppAccount) -> None:
    ids_file = tmp_path / "app-ids.json"
    for bad in ('{"a/production": 5}', '{"a/production": 65535, "b/production": 65535}', "[1]", "{"):
        ids_file.write_text(bad)
        with pytest.raises(ConfigError) as refused:
            AppUsers(ids_file, account, ids=range(65535, 65540)).identity("c/production")
        assert str(refused.value) == (
            f"{ids_file} is not a valid map of app ids to uids; fix it, or move it away so the apps get "
            "new uids (their data is handed to the new uids at their next start).")
    ids_file.write_text('{"a/production": 65535}')
    with pytest.raises(ConfigError) as full:
        AppUsers(ids_file, account, ids=range(65535, 65536)).identity("c/production")
    assert str(full.value) == (f"Every app uid from 65535 to 65535 is taken; remove the apps that are gone "
                               f"from {ids_file}.")


def test_default_range_is_unused_and_below_signed_overflow() -> None:
    assert APP_IDS.start > 1_879_048_191 and APP_IDS.stop <= 2**31
    for number in (APP_IDS.start, APP_IDS.stop - 1):
        with pytest.raises(KeyError):
            pwd.getpwuid(number)


def test_environment_holds_nothing_of_the_server_but_lang(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "server-secret")
    monkeypatch.setenv("LANG", "C.UTF-8")
    env = app_environment(Path("/opt/tako/apps/a/production/data/app"), 2,
                          [("GREETING", "hi"), ("PATH", "/opt/node/bin:/usr/bin"), ("TAKO_INSTANCE", "9")])
    app_dir = "/opt/tako/apps/a/production/data/app"
    assert env == {"PATH": "/opt/node/bin:/usr/bin", "HOME": app_dir, "LANG": "C.UTF-8", "GREETING": "hi",
                   "TAKO_DATA_DIR": app_dir, "TAKO_INSTANCE": "2"}
    monkeypatch.delenv("LANG")
    assert "LANG" not in app_environment(Path("/d"), 0, [])


def test_unreachable_data_dir_is_named(tmp_path: Path) -> None:
    who = AppIdentity(65535, 65535, ())
    hidden = tmp_path / "hidden"
    app_dir = hidden / "app"
    app_dir.mkdir(parents=True)
    os.chown(app_dir, 65535, 65535)
    let_apps_reach(hidden)
    hidden.chmod(0o750)
    with pytest.raises(ConfigError) as refused:
        check_reachable("a/production", who, app_dir, tmp_path)
    assert str(refused.value) == (
        f"Cannot start a/production as uid 65535: it cannot reach {app_dir} because {hidden} is missing or "
        "not searchable by it; let others search the folders above the data dir (chmod o+x) or choose "
        "another --data-dir.")
    os.chown(hidden, 0, 65535)
    check_reachable("a/production", who, app_dir, tmp_path)  # its group may pass now
    os.chown(app_dir, 0, 0)
    with pytest.raises(ConfigError) as not_its_own:
        check_reachable("a/production", who, app_dir, tmp_path)
    assert str(not_its_own.value) == (f"Cannot start a/production as uid 65535: {app_dir} is not its own; "
                                      "restart tako-server to hand it over.")


def tree_with_traps(tmp_path: Path, data: Path) -> dict[str, Path]:
    """A data tree owned by root, with a symlink and a hard link to root files outside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "server.key"
    secret.write_text("secret")
    linked = outside / "linked.txt"
    linked.write_text("linked")
    (data / "app" / "uploads" / "deep").mkdir(parents=True)
    (data / "app" / "notes.db").write_text("db")
    (data / "app" / "uploads" / "deep" / "a.txt").write_text("a")
    (data / "app" / "to-secret").symlink_to(secret)
    (data / "app" / "to-outside").symlink_to(outside, target_is_directory=True)
    os.link(linked, data / "app" / "hard.txt")
    (data / "tako").mkdir()
    (data / "tako" / "workflows.sqlite").write_text("wf")
    return {"secret": secret, "linked": linked, "outside": outside}


def test_restored_tree_is_handed_to_the_app_without_following_links(tmp_path: Path,
                                                                     account: AppAccount) -> None:
    paths = ServerPaths(tmp_path / "tako", AppUsers(tmp_path / "ids.json", account, ids=range(65535, 65540)))
    tree = tmp_path / "staged"
    traps = tree_with_traps(tmp_path, tree)
    paths.own_restored_tree(tree, "notes", "production")
    assert (stat.S_IMODE(tree.stat().st_mode), tree.stat().st_uid, tree.stat().st_gid) == (0o710, 0, 65535)
    for path in [*(tree / "app").rglob("*"), *(tree / "tako").rglob("*"), tree / "app", tree / "tako"]:
        st = path.lstat()
        if path.name == "hard.txt" or path.is_symlink():
            assert (st.st_uid, st.st_gid) == (0, 0), f"{path} keeps its owner"
        else:
            assert (st.st_uid, st.st_gid) == (65535, 65535), path
    for outside in (*traps.values(), *traps["outside"].iterdir()):
        assert (outside.stat().st_uid, outside.stat().st_gid) == (0, 0), f"{outside} was changed"


def test_data_dir_gets_its_owners_and_old_root_owned_data_is_handed_over(tmp_path: Path,
                                                                         account: AppAccount) -> None:
    users = AppUsers(tmp_path / "ids.json", account, ids=range(65535, 65540))
    paths = ServerPaths(tmp_path / "tako", users)
    paths.prepare()
    live = paths.data_dir("notes", "production")
    traps = tree_with_traps(tmp_path, live)  # as an older tako-server, which ran apps as root, left it
    assert paths.ensure_data_dir("notes", "production") == live
    shared = account.gid

    def owner_mode(path: Path) -> tuple[int, int, int]:
        st = path.stat()
        return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)

    assert owner_mode(paths.root) == owner_mode(paths.root / "apps") == (0, shared, 0o710)
    assert owner_mode(paths.root / "apps" / "notes") == (0, shared, 0o710)
    assert owner_mode(live.parent) == owner_mode(live) == (0, 65535, 0o710)
    for private in ("state", "tmp", "logs"):
        assert owner_mode(paths.root / private) == (0, 0, 0o700)
    assert (live / "app" / "uploads" / "deep" / "a.txt").stat().st_uid == 65535
    assert (live / "tako" / "workflows.sqlite").stat().st_uid == 65535
    assert (live / "app" / "hard.txt").stat().st_uid == 0
    assert all(p.stat().st_uid == 0 for p in (traps["secret"], traps["linked"], *traps["outside"].iterdir()))
    assert paths.ensure_data_dir("blog", "production") == paths.data_dir("blog", "production")
    assert owner_mode(paths.data_dir("blog", "production") / "app")[:2] == (65536, 65536)
