"""App downtime during a restore, as tako-server measures and reports it (issue 14).

    .venv/bin/python bench/restore_downtime.py --mb 64 256 1024 [--repeat 3]

For each size: a real `tako-server serve` on SeaweedFS runs an app (a Python process) over the
bench dataset, takes a backup, then restores it with the default safety copy (the replaced tree
is kept on disk and uploaded after the app runs again). It prints the server's
``downtime_seconds`` (from stopping the app to its processes running again), the whole restore
call, and how long the kept tree took to reach the bucket, best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._dataset import ensure_dataset, link_tree  # noqa: E402
from bench._services import running_services  # noqa: E402

APP = "bench/production"
RUNTIME = {"start": [sys.executable, "-c", "import time\nwhile True: time.sleep(1)"], "instances": 1}


def measure(mb: int, repeat: int, cache: Path, work: Path) -> tuple[float, float, float]:
    tree = ensure_dataset(cache, mb)
    best = (float("inf"), float("inf"), float("inf"))
    with running_services(work / f"{mb}mb") as services:
        data = services.app_data(APP)
        services.call("deploy", {"app": APP, "backup": None, "runtime": None})
        link_tree(tree, data)
        services.call("deploy", {"app": APP, "backup": services.settings.to_dict(), "runtime": RUNTIME})
        info = services.call("backup_now", {"app": APP, "backup": None})
        for _ in range(repeat):
            started = time.monotonic()
            reply = services.client.call_reply("restore_backup", {"app": APP, "backup_id": info["id"]},
                                               timeout=3600)
            whole = time.monotonic() - started
            while (services.call("backup_status", {"app": APP}).get("kept_tree") or {}).get("upload") \
                    != "verified":
                time.sleep(0.2)
            uploaded = time.monotonic() - started
            best = (min(best[0], reply["downtime_seconds"]), min(best[1], whole), min(best[2], uploaded))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--repeat", type=int, default=3)
    cache = Path(os.environ.get("TAKO_BENCH_CACHE", "/tmp/tako-bench"))
    parser.add_argument("--cache", type=Path, default=cache,
                        help="datasets (default $TAKO_BENCH_CACHE or /tmp/tako-bench)")
    args = parser.parse_args()
    print("| data | downtime (server) | restore call | kept tree in the bucket |")
    print("| ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory(prefix="tako-downtime-") as work:
        for mb in args.mb:
            down, whole, uploaded = measure(mb, args.repeat, args.cache, Path(work))
            print(f"| {mb} MB | {down:.3f} s | {whole:.2f} s | {uploaded:.2f} s |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
