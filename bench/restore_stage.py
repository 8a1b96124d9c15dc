"""The restore stage alone, from a local encrypted archive (for profiling; not in the table).

    restore_stage.py DATA_ROOT SCRATCH_DIR [--repeat N] [--sync]

Makes one backup of DATA_ROOT into a local file (untimed), then times decrypt + zstd -d + tar
extraction into a fresh folder, best of N, and `zstd -d | tar -x` of the same plaintext.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tako_backups.core import layout  # noqa: E402
from tako_backups.core.formats import write_v1  # noqa: E402
from tako_backups.core.pipeline import decrypt_and_extract  # noqa: E402
from tako_backups.models import BackupInfo, BackupKey  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("scratch", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sync", action="store_true", help="flush the tree (syncfs) as the server does")
    args = ap.parse_args()
    key = BackupKey("backup-key-0123456789abcdef", os.urandom(32))
    work = Path(tempfile.mkdtemp(dir=args.scratch, prefix="restore-stage-"))
    try:
        archive = work / "archive.enc"
        with open(archive, "wb") as out:
            _stats, sealed = write_v1(args.root, out, work, key)
        prefix = layout.backup_prefix("bench", "production", "la")
        info = BackupInfo(id="b1-AbCdEf12", app="bench", environment="production", server="la",
                          created_at_unix_secs=1, size_bytes=sealed.size_bytes,
                          sha256_hex=sealed.sha256_hex, archive_key=prefix + "a", manifest_key=prefix + "m",
                          encryption=sealed.encryption)
        plain = work / "plain.tar.zst"
        _decrypt(archive, plain, key.key, info)
        for _ in range(args.repeat):
            tree = work / "tree"
            tree.mkdir()
            started = time.perf_counter()
            with open(archive, "rb") as source:
                decrypt_and_extract(source, info, key, tree)
            if args.sync:
                subprocess.run(["sync", "-f", str(tree)], check=True)
            ours = time.perf_counter() - started
            shutil.rmtree(tree)
            tree.mkdir()
            started = time.perf_counter()
            sync = f" && sync -f {tree}" if args.sync else ""
            subprocess.run(f"zstd -d -c -q {plain} | tar -xf - -C {tree}{sync}", shell=True, check=True)
            ref = time.perf_counter() - started
            shutil.rmtree(tree)
            print(f"ours {ours:.2f} s   zstd -d | tar -x {ref:.2f} s   ratio {ours / ref:.2f}x", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _decrypt(archive: Path, plain: Path, key: bytes, info: BackupInfo) -> None:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    dec = Cipher(algorithms.AES(key), modes.GCM(base64.b64decode(info.encryption.nonce_base64))).decryptor()
    with open(archive, "rb") as src, open(plain, "wb") as out:
        while chunk := src.read(1 << 22):
            out.write(dec.update(chunk))
    dec.finalize_with_tag(base64.b64decode(info.encryption.tag_base64))


if __name__ == "__main__":
    main()
