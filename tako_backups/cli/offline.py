"""``tako backups verify``, ``tako backups extract`` and ``tako backups files``: no server needed.

The source is a downloaded archive (its manifest beside it as ``<archive>.json``, or
``--manifest``), or a backup id read straight from the bucket with the env's storage
credentials. Keys come from ``.tako/secrets.json`` for ``--env``. When the env has a backup copy
(``copy_to`` in tako-backups.toml), a backup id whose primary bucket is unreachable, lacks it or
serves it damaged is read from the copy instead, and the output says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import typer

from .context import Globals, get_globals, resolve_env

if TYPE_CHECKING:
    from ..core.copies import Place
    from ..core.partial import ArchiveAccess
    from ..core.verify import VerifyReport
    from ..models import BackupInfo, BackupKey
    from .targets import Target

T = TypeVar("T")

SOURCE_HELP = "A downloaded <id>.tar.zst.enc, or a backup id to read from the bucket."
ENV_HELP = "Environment whose keys to use (default: production)."
MANIFEST_HELP = "Manifest JSON (default <archive>.json)."
PATH_HELP = ("A file or folder inside the archive, e.g. app/uploads/2026/11/x.png (repeat for more); "
             "format 2 reads only the chunks that hold them.")


@dataclass
class Source:
    """A backup to verify or extract: its manifest, the env's keys, how to name it in messages and
    how to open its archive (a downloaded file, or a GET from the bucket)."""

    info: BackupInfo
    keys: list[BackupKey]
    label: str
    _opener: Callable[[], BinaryIO]
    read_range: Callable[[int, int], bytes]  # a ranged GET, or a pread of the downloaded file

    @contextlib.contextmanager
    def open(self) -> Iterator[BinaryIO]:
        with self._opener() as stream:
            yield stream

    def access(self) -> ArchiveAccess:
        """Both ways of reading the archive, for :mod:`~tako_backups.core.partial`."""
        from ..core.partial import ArchiveAccess

        return ArchiveAccess(self.open, self.read_range)


def _with_source(opts: Globals, source: str, manifest: Path | None, env: str | None, server: str | None,
                 action: Callable[[Source], T]) -> T:
    """Run ``action`` on the backup ``source`` names: a downloaded file, or a backup id on the
    bucket -- then on the primary, falling back to the env's copy (see the module docstring).
    Raises ConfigError, FormatError, IntegrityError, StorageError, NotFoundError, and what
    ``action`` raises."""
    from ..core.layout import is_backup_id

    if not Path(source).exists() and is_backup_id(source):
        return _from_bucket(opts, source, env, server, action)
    return action(_file_source(opts, source, manifest, env))


def _file_source(opts: Globals, source: str, manifest: Path | None, env: str | None) -> Source:
    from ..errors import ConfigError, FormatError, IntegrityError
    from ..models import BackupInfo
    from ..project.backup_keys import backup_keys_for
    from ..project.secrets import load_secrets
    from ..project.tako_toml import load_project
    from .prompts import key_prompts

    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"Archive '{source}' not found (pass a downloaded <id>.tar.zst.enc or a "
                          "backup id).")
    manifest_path = manifest or path.with_name(path.name + ".json")
    if not manifest_path.is_file():
        raise ConfigError(f"Manifest {manifest_path} not found; pass --manifest (tako backups download "
                          "saves it as <archive>.json; it holds the GCM tag).")
    try:
        info = BackupInfo.from_json(manifest_path.read_bytes())
    except FormatError as exc:
        raise FormatError(f"{manifest_path}: {exc}") from None
    size = path.stat().st_size
    if size != info.size_bytes:
        raise IntegrityError(f"Archive {path} is {size} bytes but its manifest says {info.size_bytes}: "
                             "the file is incomplete or not this backup.")
    name = resolve_env(opts, env)
    project = load_project(opts.config_path)
    keys = backup_keys_for(load_secrets(project.secrets_path), name, key_prompts())
    return Source(info, keys, str(path), lambda: open(path, "rb"), lambda at, n: _pread(path, at, n))


def _pread(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as handle:
        return os.pread(handle.fileno(), length, offset)


def _from_bucket(opts: Globals, backup_id: str, env: str | None, server: str | None,
                 action: Callable[[Source], T]) -> T:
    """``action`` on ``backup_id`` read from the env's bucket, else from its copy's."""
    from ..core.copies import COPY, PRIMARY, Place, first_working
    from ..errors import ConfigError
    from ..project.backup_wire import backup_settings_to_send
    from ..project.secrets import load_secrets
    from ..storage.s3 import S3Store
    from .prompts import key_prompts
    from .render import source_note
    from .replies import Source as ReadFrom
    from .targets import require_single, resolve_target

    target = resolve_target(opts, env, server)
    entry = require_single(target, "Pass --server to choose which server's backups to read.")
    binding = backup_settings_to_send(target.project, load_secrets(target.project.secrets_path),
                                      target.env, key_prompts())
    if binding is None:
        raise ConfigError(f"Backups are not enabled for environment '{target.env}', so there is no "
                          "bucket to read; pass a downloaded archive instead.")
    places = [Place(PRIMARY, S3Store.from_binding(binding.storage), binding.storage.bucket)]
    if binding.copy is not None:
        places.append(Place(COPY, S3Store.from_binding(binding.copy), binding.copy.bucket))
    keys = list(binding.backup_keys)
    found = first_working(places, lambda place: action(_bucket_source(opts, target, entry.name, place,
                                                                      backup_id, keys)))
    if binding.copy is not None:
        source_note(opts.out, f"Read {backup_id}",
                    ReadFrom(found.used.name, found.used.bucket, "; ".join(found.failures) or None))
    return found.value


def _bucket_source(opts: Globals, target: Target, server: str, place: Place, backup_id: str,
                   keys: list[BackupKey]) -> Source:
    """The backup ``backup_id`` on ``place``'s bucket: under the server's prefix (config.toml's
    name, sanitized), else under the env's other servers' prefixes, else -- when the bucket can
    be listed -- under any server prefix of the env (a server files backups under its own name,
    which may differ); where it was found is said when it is not the server's own prefix."""
    from ..core.layout import backup_prefix
    from ..core.lookup import locate_backup

    names = [server, *(n for n in target.project.env(target.env).servers if n != server)]
    found = locate_backup(place.store, target.app, target.env, names, backup_id)
    expected = backup_prefix(target.app, target.env, server)
    if found.prefix != expected:
        opts.out.warning(f"Backup {backup_id} is not under server '{server}' ({expected}); found under "
                         f"server '{found.server}' (prefix {found.prefix}).")
    info = found.info
    return Source(info, keys, f"{backup_id} (bucket {place.bucket})",
                  lambda: place.store.open_read(info.archive_key),
                  lambda at, n: place.store.read_range(info.archive_key, at, n))


def _report_dict(report: VerifyReport) -> dict[str, Any]:
    return {"backup_id": report.backup_id, "files": report.files, "bytes": report.bytes,
            "sqlite_files": report.sqlite_files, "seconds": round(report.seconds, 3)}


def verify(
    ctx: typer.Context,
    source: str = typer.Argument(..., help=SOURCE_HELP),
    manifest: Path | None = typer.Option(None, "--manifest", help=MANIFEST_HELP),
    env: str | None = typer.Option(None, "--env", help=ENV_HELP),
    server: str | None = typer.Option(None, "--server", help="Server whose backups to read (backup id)."),
) -> None:
    """Check a backup offline: size, SHA-256, GCM tag, extraction, SQLite integrity_check."""
    from ..core.verify import verify_backup
    from .output import format_size

    opts = get_globals(ctx)

    def check(src: Source) -> tuple[Source, VerifyReport]:
        with src.open() as stream:
            return src, verify_backup(stream, src.info, src.keys, Path(tempfile.gettempdir()), opts.out)

    src, report = _with_source(opts, source, manifest, env, server, check)
    opts.out.line(f"Verified {src.info.id}: checksum, tag and {len(report.sqlite_files)} SQLite "
               f"integrity checks ok")
    opts.out.line(f"{report.files} files, {format_size(report.bytes)}, restored in {report.seconds:.2f}s")
    opts.out.result("backups verify", _report_dict(report))


def extract(
    ctx: typer.Context,
    source: str = typer.Argument(..., help=SOURCE_HELP),
    into: Path = typer.Option(..., "--into", help="Folder to extract into (app/ and tako/)."),
    force: bool = typer.Option(False, "--force", help="Replace app/ and tako/ in a non-empty folder."),
    manifest: Path | None = typer.Option(None, "--manifest", help=MANIFEST_HELP),
    env: str | None = typer.Option(None, "--env", help=ENV_HELP),
    server: str | None = typer.Option(None, "--server", help="Server whose backups to read (backup id)."),
    paths: list[str] | None = typer.Option(None, "--path", metavar="PATH", help=PATH_HELP),
) -> None:
    """Verify a backup like `verify`, then place its app/ and tako/ in --into.

    With --path, only those files and folders are extracted (into --into/<path>), each one
    authenticated before it is placed; existing ones are replaced only with --force."""
    from ..core.verify import extract_verified
    from ..errors import ConfigError
    from .output import format_size

    opts = get_globals(ctx)
    into = into.resolve()
    if into.exists() and not into.is_dir():
        raise ConfigError(f"--into {into} is not a folder.")
    if paths:
        _extract_paths(opts, source, into, force, manifest, env, server, paths)
        return
    if into.is_dir() and any(into.iterdir()) and not force:
        raise ConfigError(f"{into} is not empty; pass --force to replace its app/ and tako/.")
    if opts.dry_run:
        src = _with_source(opts, source, manifest, env, server, lambda found: found)
        opts.out.would(f"verify {src.label} and extract it into {into}")
        return
    into.parent.mkdir(parents=True, exist_ok=True)

    def unpack(found: Source) -> tuple[Source, VerifyReport]:
        scratch = Path(tempfile.mkdtemp(prefix=".tako-extract-", dir=into.parent))
        try:
            with found.open() as stream:
                unpacked = extract_verified(stream, found.info, found.keys, scratch, opts.out)
            _place(scratch, into)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return found, unpacked

    src, report = _with_source(opts, source, manifest, env, server, unpack)
    opts.out.line(f"Extracted {src.info.id} into {into}: {report.files} files, {format_size(report.bytes)}, "
               f"{len(report.sqlite_files)} SQLite files checked")
    opts.out.result("backups extract", {**_report_dict(report), "into": str(into)})


def _extract_paths(opts: Globals, source: str, into: Path, force: bool, manifest: Path | None,
                   env: str | None, server: str | None, given: list[str]) -> None:
    """``extract --path``: the selected paths into staging beside ``into``, authenticated, then
    moved into place (nothing is placed when any path matches nothing or the archive fails)."""
    from ..core.partial import PathSelection, check_free, extract_paths, place_paths
    from .output import format_size

    selection = PathSelection.parse(given)
    if not force:
        check_free(into, selection)
    if opts.dry_run:
        src = _with_source(opts, source, manifest, env, server, lambda found: found)
        opts.out.would(f"extract {', '.join(selection.paths)} of {src.label} into {into}")
        return
    into.mkdir(parents=True, exist_ok=True)

    def unpack(found: Source) -> tuple[Source, int, int]:
        scratch = Path(tempfile.mkdtemp(prefix=".tako-extract-", dir=into.parent))
        try:
            (scratch / "picked").mkdir()
            (scratch / "trash").mkdir()
            result, fetched = extract_paths(found.access(), found.info, found.keys, scratch / "picked",
                                            selection, opts.out)
            place_paths(scratch / "picked", into, selection, scratch / "trash", replace=force)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return found, result.members, fetched

    src, members, fetched = _with_source(opts, source, manifest, env, server, unpack)
    share = fetched * 100 / src.info.size_bytes if src.info.size_bytes else 100.0
    opts.out.line(f"Extracted {', '.join(selection.paths)} of {src.info.id} into {into}: {members} entries, "
                  f"read {format_size(fetched)} of {format_size(src.info.size_bytes)} ({share:.1f} %), "
                  "every byte authenticated")
    opts.out.result("backups extract", {"backup_id": src.info.id, "into": str(into),
                                        "paths": list(selection.paths), "entries": members,
                                        "bytes_read": fetched, "archive_bytes": src.info.size_bytes})


def files(
    ctx: typer.Context,
    source: str = typer.Argument(..., help=SOURCE_HELP),
    paths: list[str] | None = typer.Option(None, "--path", metavar="PREFIX",
                                           help="List only this file or folder (repeatable)."),
    manifest: Path | None = typer.Option(None, "--manifest", help=MANIFEST_HELP),
    env: str | None = typer.Option(None, "--env", help=ENV_HELP),
    server: str | None = typer.Option(None, "--server", help="Server whose backups to read (backup id)."),
) -> None:
    """List a backup's files (size, modification time, path) without extracting them.

    Format 2 reads only the archive's authenticated index (a few ranged reads); format 1 reads
    the whole archive, skipping file data, and lists only once its tag verified."""
    from ..core.partial import PathSelection, list_files
    from .output import format_local_time, format_size

    opts = get_globals(ctx)
    selection = PathSelection.parse(paths) if paths else None
    if opts.dry_run:
        src = _with_source(opts, source, manifest, env, server, lambda found: found)
        opts.out.would(f"list the files of {src.label}")
        return
    src, listing = _with_source(opts, source, manifest, env, server,
                                lambda found: (found, list_files(found.access(), found.info, found.keys,
                                                                 selection, opts.out)))
    shown = [e for e in listing.entries if e.kind != "dir"]
    for entry in shown:
        opts.out.line(f"{format_size(entry.size):>10}  {format_local_time(entry.mtime)}  {entry.path}"
                      + (" (symlink)" if entry.kind == "symlink" else ""))
    opts.out.line(f"{len(shown)} files in {src.info.id} (format {listing.format}; verified: "
                  f"{listing.verified}; read {format_size(listing.bytes_read)})")
    opts.out.result("backups files", {"backup_id": src.info.id, "format": listing.format,
                                      "verified": listing.verified, "bytes_read": listing.bytes_read,
                                      "files": [e.to_dict() for e in listing.entries]})


def _place(scratch: Path, into: Path) -> None:
    """Move the verified app/ and tako/ into ``into`` (replacing old ones only after)."""
    into.mkdir(exist_ok=True)
    for top in ("app", "tako"):
        final = into / top
        aside = None
        if final.exists() or final.is_symlink():
            aside = scratch / f"old-{top}"
            os.rename(final, aside)
        try:
            os.rename(scratch / top, final)
        except OSError:
            if aside is not None:
                os.rename(aside, final)
            raise
