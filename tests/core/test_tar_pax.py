"""The archive writer's PAX headers are byte for byte what :meth:`tarfile.TarInfo.tobuf` writes,
for the plain members it builds itself and for the ones it hands to tarfile."""

from __future__ import annotations

import io
import random
import tarfile

import pytest

from tako_backups.core.tar_pax import pax_header


def tarfiles(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")


def member(rng: random.Random) -> tarfile.TarInfo:
    """A plain member (what a data root holds) with values up to each limit of the fast path,
    and half the time one thing across a limit: a name or link target over 100 characters,
    non-ASCII or undecodable, ids, size or mtime past their octal fields or negative, owner
    names, device numbers, PAX records of the caller's."""
    def text(length: int, alphabet: str = "abcxyz-_./0189") -> str:
        return "".join(rng.choice(alphabet) for _ in range(length))

    info = tarfile.TarInfo(text(rng.choice((1, 40, 99, 100))))
    info.type = rng.choice((tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE))
    info.mode = rng.choice((0o644, 0o755, 0o4755, 0o2770, 0o100644, 0o40700))
    info.uid, info.gid = (rng.choice((0, 1000, 8 ** 7 - 1)) for _ in range(2))
    info.size = rng.choice((0, 1, 300_000, 8 ** 11 - 1))
    info.mtime = rng.choice((0, 1, 1_764_000_000, 1_764_000_000.5, 1_764_000_000.123456, 2.5, 0.4,
                             9.99, 99_999_999.25, 8 ** 11 - 1, 8 ** 11 - 0.6))
    if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = text(rng.choice((1, 99, 100)))
    across = [
        lambda: setattr(info, "name", text(rng.choice((101, 150)))),
        lambda: setattr(info, "name", text(20, "abé日")),
        lambda: setattr(info, "name", text(20, "ab\udcff")),
        lambda: setattr(info, "linkname", text(rng.choice((101, 200)))),
        lambda: setattr(info, "linkname", text(20, "abé日")),
        lambda: setattr(info, "uid", rng.choice((8 ** 7, 2 ** 32 - 1))),
        lambda: setattr(info, "gid", rng.choice((8 ** 7, 2 ** 32 - 1))),
        lambda: setattr(info, "size", rng.choice((8 ** 11, 5 << 40))),
        lambda: setattr(info, "mtime", rng.choice((-1.5, -7, -0.6, float(8 ** 11), 8 ** 11,
                                                   float("inf"), float("nan")))),
        lambda: setattr(info, "uname", "app"),
        lambda: setattr(info, "gname", "staff"),
        lambda: setattr(info, "type", tarfile.FIFOTYPE),
        lambda: (setattr(info, "type", rng.choice((tarfile.CHRTYPE, tarfile.BLKTYPE))),
                 setattr(info, "devmajor", 8), setattr(info, "devminor", 1)),
        lambda: setattr(info, "pax_headers", {"comment": "hello"}),
    ]
    if rng.random() < 0.5:
        rng.choice(across)()
    return info


def test_headers_are_tarfiles_bytes_for_every_kind_of_member() -> None:
    rng = random.Random(20261203)
    for _ in range(5_000):
        info = member(rng)
        try:
            expected = tarfiles(info)
        except (ValueError, OverflowError):
            with pytest.raises((ValueError, OverflowError)):
                pax_header(info)
            continue
        assert pax_header(info) == expected, (info.name, info.type, info.mtime, info.size)


@pytest.mark.parametrize("mtime", [1_764_000_000.123456, 1_764_000_000, 9.5, 99_999_999.25])
def test_a_plain_member_reads_back_whole(mtime: float) -> None:
    """A plain member with a float mtime gets an extended header with its full precision (records
    of every length class) and its rounded value in the ustar field."""
    info = tarfile.TarInfo("app/uploads/001/photo-000929.bin")
    info.mode, info.uid, info.gid, info.size, info.mtime = 0o644, 1000, 1000, 3, mtime
    data = pax_header(info) + b"abc" + bytes(509) + bytes(1024)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        (read,) = tar.getmembers()
        assert (read.name, read.mode, read.uid, read.gid, read.size, read.mtime) == (
            info.name, 0o644, 1000, 1000, 3, mtime)
        assert tar.extractfile(read).read() == b"abc"  # type: ignore[union-attr]
