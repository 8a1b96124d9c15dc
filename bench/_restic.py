"""restic against the bench's own SeaweedFS: the reference for backup and restore end to end.

Fairness (see bench/README.md): every backup goes into a fresh repository (a new prefix of the
bench's bucket, whose volumes SeaweedFS has already grown, as for ours) with an empty cache, so
restic cannot deduplicate against an earlier run; every restore starts from an
empty cache into an empty folder, and its time is given both as restic reports it and followed by
``sync -f`` of the restored folder, because tako-server flushes the restored tree before the swap
(both flush, or neither).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from _services import children_cpu_seconds, cpu_seconds

PASSWORD = "bench"


class ResticS3:
    """restic repositories under ``restic/run-N/`` of the bench's bucket, one per backup run."""

    def __init__(self, services: Any, scratch: Path) -> None:
        self._seaweed = services.seaweed
        self._bucket = services.settings.storage.bucket
        self._scratch = scratch
        self._runs = 0
        self.last_repo: str | None = None
        self.last_cpu: tuple[float, float] = (0.0, 0.0)

    def _env(self, cache: Path) -> dict[str, str]:
        return {**os.environ, "RESTIC_PASSWORD": PASSWORD, "RESTIC_CACHE_DIR": str(cache),
                "AWS_ACCESS_KEY_ID": self._seaweed.access_key,
                "AWS_SECRET_ACCESS_KEY": self._seaweed.secret_key,
                "AWS_DEFAULT_REGION": "us-east-1"}

    def _repo(self, prefix: str) -> str:
        return f"s3:{self._seaweed.endpoint}/{self._bucket}/{prefix}"

    def _fresh_cache(self) -> Path:
        cache = self._scratch / "restic-s3-cache"
        shutil.rmtree(cache, ignore_errors=True)
        return cache

    def backup(self, source: Path) -> float:
        """`restic backup app tako` (run in ``source``) into a new repository; wall seconds.
        ``last_cpu`` then holds the CPU seconds restic and SeaweedFS spent on it."""
        self._runs += 1
        prefix = f"restic/run-{self._runs}"
        env = self._env(self._fresh_cache())
        subprocess.run(["restic", "init", "-q", "-r", self._repo(prefix)], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        weed = cpu_seconds(self._seaweed.process.pid)
        children = children_cpu_seconds()
        started = time.perf_counter()
        subprocess.run(["restic", "backup", "-q", "-r", self._repo(prefix), "app", "tako"], cwd=source,
                       check=True, env=env, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        self.last_cpu = (children_cpu_seconds() - children, cpu_seconds(self._seaweed.process.pid) - weed)
        self.last_repo = prefix
        return wall

    def restore(self, target: Path) -> tuple[float, float]:
        """`restic restore latest --target` of the last backup into an empty ``target``, from an
        empty cache: (wall seconds of restic alone, the same plus `sync -f target`)."""
        assert self.last_repo is not None, "restic restore needs a restic backup first"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        env = self._env(self._fresh_cache())
        subprocess.run(["sync"], check=True)  # start both sides from a clean page cache state
        started = time.perf_counter()
        subprocess.run(["restic", "restore", "-q", "-r", self._repo(self.last_repo), "latest",
                        "--target", str(target)], check=True, env=env, stdout=subprocess.DEVNULL)
        alone = time.perf_counter() - started
        subprocess.run(["sync", "-f", str(target)], check=True)
        synced = time.perf_counter() - started
        if not (target / "app").is_dir():
            raise SystemExit("restic restore left no app/ folder: the reference is broken")
        shutil.rmtree(target, ignore_errors=True)
        return alone, synced
