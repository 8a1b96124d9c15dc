"""Finding a backup by id under the env's server prefixes (offline verify/extract)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tako_backups.core.lookup import locate_backup
from tako_backups.errors import NotFoundError
from tako_backups.models import BackupKey
from tako_backups.storage.memory import MemoryStore
from tests.support.backups import take_backup

ROOT = "_tako/backups/demo/production/"


@pytest.fixture
def store(tmp_path: Path, key: BackupKey) -> MemoryStore:
    data = tmp_path / "data"
    (data / "app").mkdir(parents=True)
    (data / "tako").mkdir()
    made = MemoryStore()
    for server in ("La.1", "ny", "zz"):
        take_backup(made, data, key, work=tmp_path / "w", server=server)
    return made


def ids(store: MemoryStore, label: str) -> str:
    [backup_id] = {k.rsplit("/", 1)[1].split(".")[0] for k in store.objects
                   if k.startswith(f"{ROOT}{label}/b")}
    return backup_id


def test_the_named_server_then_the_envs_others_then_any_listed_prefix(store: MemoryStore) -> None:
    own = locate_backup(store, "demo", "production", ["la-1"], ids(store, "la-1"))
    assert (own.prefix, own.server) == (f"{ROOT}la-1/", "la-1")
    other = locate_backup(store, "demo", "production", ["la", "ny"], ids(store, "ny"))
    assert (other.prefix, other.server, other.info.id) == (f"{ROOT}ny/", "ny", ids(store, "ny"))
    listed = locate_backup(store, "demo", "production", ["la", "ny"], ids(store, "la-1"))
    assert (listed.server, listed.info.server) == ("la-1", "la-1")
    with pytest.raises(NotFoundError) as info:
        locate_backup(store, "demo", "production", ["la", "ny"], "b1700000000-AbCdEf12")
    assert str(info.value) == (
        f"Backup 'b1700000000-AbCdEf12' was not found under any server prefix of {ROOT} (tried {ROOT}la/, "
        f"{ROOT}ny/, {ROOT}la-1/, {ROOT}zz/).")


def test_without_a_listing_the_error_names_the_prefixes_tried(store: MemoryStore) -> None:
    store.deny_list = True
    assert locate_backup(store, "demo", "production", ["la", "ny"], ids(store, "ny")).server == "ny"
    with pytest.raises(NotFoundError) as info:
        locate_backup(store, "demo", "production", ["la", "ny"], ids(store, "la-1"))
    assert str(info.value) == (
        f"Backup '{ids(store, 'la-1')}' was not found under {ROOT}la/, {ROOT}ny/; the other server prefixes "
        f"under {ROOT} were not searched: listing the bucket is denied to these credentials.")


def test_a_malformed_id_is_refused_first(store: MemoryStore) -> None:
    with pytest.raises(NotFoundError, match="'nope' is not a backup id"):
        locate_backup(store, "demo", "production", ["la"], "nope")
