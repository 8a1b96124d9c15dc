"""Saving a backup from its presigned URL: streamed to a temp file beside the output, checked
against the manifest (size and SHA-256) while it streams, fsynced, then moved into place next to
its manifest (``<output>.json``, which holds the GCM tag needed to decrypt it).

Existing files are never overwritten, and a failed download leaves no file behind. The URL is
never shown: it carries the storage access key id and a signature.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import BinaryIO

import httpx

from ..errors import ConfigError, IntegrityError, StorageError
from ..models import BackupInfo
from ..primitives.atomic_files import fsync_dir_best_effort, os_reason, place_new, temp_beside
from ..progress import Progress

CHUNK = 1 << 20
READ_TIMEOUT = 60.0
CONNECT_TIMEOUT = 10.0


def manifest_path_for(output: Path) -> Path:
    """Where the manifest of the archive at ``output`` is saved: ``<output>.json``."""
    return output.with_name(output.name + ".json")


def check_free(output: Path) -> None:
    """Raises ConfigError when the archive or its manifest path already exists."""
    for path in (output, manifest_path_for(output)):
        if path.exists() or path.is_symlink():
            raise ConfigError(f"{path} already exists; remove it or pass --output with another path.")


def save_backup(url: str, info: BackupInfo, output: Path, progress: Progress,
                transport: httpx.BaseTransport | None = None) -> None:
    """Download the archive ``info`` describes from ``url`` to ``output`` and its manifest to
    ``<output>.json``.

    Raises ConfigError (a path exists or cannot be written), StorageError (the download failed)
    or IntegrityError (size or SHA-256 differ from the manifest); then no file is left behind.
    """
    check_free(output)
    folder = output.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"Cannot create {folder}: {exc.strerror or exc}.") from None
    temps: list[Path] = []
    placed: list[Path] = []
    try:
        archive = _temp_beside(output, temps)
        with open(archive, "wb") as handle:
            _stream(url, info, handle, progress, transport)
            handle.flush()
            os.fsync(handle.fileno())
        manifest = _temp_beside(manifest_path_for(output), temps)
        with open(manifest, "wb") as handle:
            handle.write(info.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        _place(manifest, manifest_path_for(output), placed)
        _place(archive, output, placed)
        fsync_dir_best_effort(folder)
    except BaseException:
        for path in temps + placed:
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    finally:
        progress.finish()


def _stream(url: str, info: BackupInfo, handle: BinaryIO, progress: Progress,
            transport: httpx.BaseTransport | None) -> None:
    digest = hashlib.sha256()
    size = 0
    what = f"backup {info.id}"
    timeout = httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)
    try:
        with httpx.Client(transport=transport, timeout=timeout) as client, \
                client.stream("GET", url) as response:
            if response.status_code != 200:
                raise StorageError(f"Downloading {what} failed: the storage answered HTTP "
                                   f"{response.status_code}.")
            progress.start(f"Downloading {info.id}", total=info.size_bytes)
            for chunk in response.iter_bytes(CHUNK):
                size += len(chunk)
                if size > info.size_bytes:
                    raise IntegrityError(f"Downloaded {what} is larger than the {info.size_bytes} bytes "
                                         "its manifest records.")
                digest.update(chunk)
                handle.write(chunk)
                progress.advance(len(chunk))
    except httpx.HTTPError as exc:
        raise StorageError(f"Downloading {what} failed: {type(exc).__name__}.") from None
    except OSError as exc:
        raise ConfigError(f"Cannot write the download of {what}: {exc.strerror or exc}.") from None
    if size != info.size_bytes:
        raise IntegrityError(f"Downloaded {what} is {size} bytes; its manifest records {info.size_bytes}.")
    if digest.hexdigest() != info.sha256_hex:
        raise IntegrityError("Downloaded backup checksum did not match manifest.")


def _temp_beside(path: Path, temps: list[Path]) -> Path:
    try:
        fd, temp = temp_beside(path, suffix=".part")
    except OSError as exc:
        raise ConfigError(f"Cannot write {path}: {os_reason(exc)}.") from None
    os.close(fd)
    temps.append(temp)
    return temp


def _place(temp: Path, final: Path, placed: list[Path]) -> None:
    """Move ``temp`` to ``final`` without ever replacing an existing file."""
    try:
        place_new(temp, final)
    except FileExistsError:
        raise ConfigError(f"{final} already exists; remove it or pass --output with another path.") \
            from None
    except OSError as exc:
        raise ConfigError(f"Cannot write {final}: {os_reason(exc)}.") from None
    placed.append(final)
