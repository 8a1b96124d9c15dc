"""A deterministic data tree shaped like a Tako app's, for the tests and the benchmark.

    python -m tests.support.dataset OUT --mb N [--seed S]      (from the repository root)
    make_dataset(out, mb, seed)                                 (from Python)

``OUT`` receives what a server keeps for one app/env (``apps/{app}/{env}/data``):

- ``app/app.db``: SQLite in WAL mode, about 40 % of the size: rows of text and JSON;
- ``app/uploads/NNN/photo-*.bin``: photo-like, incompressible files (20-600 kB), about 35 %;
- ``app/uploads/NNN/doc-*.txt``: document-like, compressible text (2-60 kB), about 20 %;
- ``app/symlink-to-latest``: a relative symlink to the newest ``uploads/NNN`` folder;
- ``tako/workflows.sqlite``: Tako's workflow state (SQLite, WAL mode), about 5 %;
- ``tako/channels.sqlite``: Tako's channel replay log, 256 kB (a backup never includes it).

The same ``mb`` and ``seed`` give the same files byte for byte (SQLite files too, for one SQLite
version). Bytes come from AES-CTR keyed by the seed and the part being written, in large blocks;
text is sliced from one pool of words built from that stream; Python's ``random`` only picks sizes,
offsets and a few values per row. The 1 GB tree builds in well under a minute.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

MB = 1024 * 1024
SHARES = {"app.db": 0.40, "photos": 0.35, "docs": 0.20, "workflows": 0.05}
CHANNELS_BYTES = 256 * 1024
FILES_PER_FOLDER = 200
PHOTO_SIZES = (20_000, 600_000)
DOC_SIZES = (2_000, 60_000)
ROW_CHARS = (200, 1_500)
POOL_CHARS = 64 * MB  # text is sliced from a pool this large (smaller for trees under 100 MB)

# Words an app's rows and documents are made of; earlier words are more common (see _VOCABULARY).
WORDS = (
    "the order customer invoice a to of and payment for is account user in session upload "
    "shipment on with status refund plan report message draft export import comment thread "
    "billing trial webhook retry queue job worker token avatar photo note label team project "
    "deadline review approved pending failed delivered cancelled total amount tax currency "
    "address city country email phone reminder schedule calendar event attachment archive"
).split()


@dataclass(frozen=True)
class Built:
    """What :func:`make_dataset` wrote: total bytes of regular files and the upload file count."""

    bytes: int
    uploads: int


class Stream:
    """A deterministic pseudo-random byte stream: AES-256-CTR over zeros, keyed by seed and label."""

    def __init__(self, seed: int, label: str) -> None:
        key = hashlib.sha256(f"tako-backups dataset/{seed}/{label}".encode()).digest()
        self._enc = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()

    def read(self, n: int) -> bytes:
        return self._enc.update(bytes(n))


def _vocabulary() -> list[str]:
    """256 word slots with a Zipf-like spread: slot i holds word int(len(WORDS) * (i/256)**2)."""
    return [WORDS[len(WORDS) * i * i // (256 * 256)] for i in range(256)]


_VOCABULARY = _vocabulary()
# Every pair of word slots, indexed by a 16-bit number; some end a sentence or a paragraph.
_PAIRS = [
    f"{_VOCABULARY[i >> 8]} {_VOCABULARY[i & 255]}"
    + (".\n\n" if i % 509 == 0 else ". " if i % 13 == 0 else " ")
    for i in range(65_536)
]


class Text:
    """Word-like text: slices at random offsets of one seeded pool of ``chars`` characters (two
    words per 16 bits of the stream). A slice per row or document is cheap, and a pool much larger
    than zstd's window (2 MiB at level 3) keeps nearby slices from repeating each other."""

    def __init__(self, seed: int, chars: int) -> None:
        stream = Stream(seed, "text")
        pieces: list[str] = []
        have = 0
        while have < chars:
            want = min(chars - have, 4 * MB) // 8 + 16  # a pair averages over 8 characters
            piece = "".join(map(_PAIRS.__getitem__, memoryview(stream.read(2 * want)).cast("H")))
            pieces.append(piece)
            have += len(piece)
        self.pool = "".join(pieces)

    def take(self, rng: random.Random, chars: int) -> str:
        """``chars`` characters from a random offset (``chars`` at most the pool's length)."""
        at = rng.randrange(len(self.pool) - chars + 1)
        return self.pool[at:at + chars]


def make_sqlite(path: Path, target: int, seed: int, words: Text, table: str,
                columns: tuple[str, str, str]) -> None:
    """A SQLite database in WAL mode of about ``target`` bytes: rows of (id, word, text, JSON).

    Built without a journal in large transactions (nothing else reads it meanwhile), then switched
    to WAL mode, which stays in the file header as a live app's database would have it."""
    path.unlink(missing_ok=True)
    rng = random.Random(f"{seed}/{table}")
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        kind, body, meta = columns
        db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, {kind} TEXT NOT NULL, "
                   f"{body} TEXT NOT NULL, {meta} TEXT NOT NULL)")
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        batch_rows = max(16, min(1_000, target // 8 // ROW_CHARS[1]))
        written = 0
        while db.execute("PRAGMA page_count").fetchone()[0] * page_size < target:
            rows = []
            for row in range(written + 1, written + batch_rows + 1):
                tag = _VOCABULARY[rng.getrandbits(8)]
                doc = (f'{{"n":{row},"tag":"{tag}","score":{rng.random():.6f},'
                       f'"owner":"user-{rng.getrandbits(20):05x}"}}')
                rows.append((row, tag, words.take(rng, rng.randint(*ROW_CHARS)), doc))
            with db:
                db.executemany(f"INSERT INTO {table} VALUES (?, ?, ?, ?)", rows)
            written += batch_rows
        db.execute("PRAGMA journal_mode=WAL")
    finally:
        db.close()


def write_uploads(uploads: Path, photo_bytes: int, doc_bytes: int, seed: int, words: Text) -> int:
    """Photo-like files, then document-like ones, 200 to a folder; returns the last folder number."""
    rng = random.Random(f"{seed}/uploads")
    photos = Stream(seed, "photos")
    n = 0

    def folder() -> Path:
        path = uploads / f"{n // FILES_PER_FOLDER:03d}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    written = 0
    while written < photo_bytes:
        size = min(rng.randint(*PHOTO_SIZES), photo_bytes - written)
        (folder() / f"photo-{n:06d}.bin").write_bytes(photos.read(size))
        written, n = written + size, n + 1
    written = 0
    while written < doc_bytes:
        size = min(rng.randint(*DOC_SIZES), doc_bytes - written)
        (folder() / f"doc-{n:06d}.txt").write_bytes(words.take(rng, size).encode())
        written, n = written + size, n + 1
    return max(n - 1, 0) // FILES_PER_FOLDER


def make_dataset(out: Path, mb: int, seed: int = 7) -> Built:
    """Write the tree (see the module docstring) of about ``mb`` MiB into ``out``, which must not
    hold an earlier tree. Raises ValueError when ``mb`` is below 1 and OSError when writing fails."""
    if mb < 1:
        raise ValueError(f"The dataset size must be at least 1 MB, not {mb}.")
    out = Path(out)
    total = mb * MB
    (out / "app").mkdir(parents=True, exist_ok=True)
    (out / "tako").mkdir(parents=True, exist_ok=True)
    text_chars = int(total * (SHARES["app.db"] + SHARES["docs"] + SHARES["workflows"]))
    words = Text(seed, max(MB, min(POOL_CHARS, text_chars)))
    make_sqlite(out / "app" / "app.db", int(total * SHARES["app.db"]), seed, words, "records",
                ("kind", "body", "meta"))
    make_sqlite(out / "tako" / "workflows.sqlite", int(total * SHARES["workflows"]), seed, words, "runs",
                ("workflow", "log", "payload"))
    make_sqlite(out / "tako" / "channels.sqlite", CHANNELS_BYTES, seed, words, "replay",
                ("channel", "message", "headers"))
    last = write_uploads(out / "app" / "uploads", int(total * SHARES["photos"]),
                         int(total * SHARES["docs"]), seed, words)
    link = out / "app" / "symlink-to-latest"
    link.unlink(missing_ok=True)
    os.symlink(f"uploads/{last:03d}", link)
    files = [p for p in out.rglob("*") if p.is_file() and not p.is_symlink()]
    return Built(bytes=sum(p.stat().st_size for p in files),
                 uploads=sum(1 for p in files if p.parent.parent.name == "uploads"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder to write app/ and tako/ into")
    ap.add_argument("--mb", type=int, default=1024, help="size in MiB (default 1024)")
    ap.add_argument("--seed", type=int, default=7, help="a different seed gives different bytes")
    args = ap.parse_args(argv)
    built = make_dataset(args.out, args.mb, args.seed)
    print(f"{args.out}: {built.bytes / MB:.1f} MiB, {built.uploads} upload files")


if __name__ == "__main__":
    main()
