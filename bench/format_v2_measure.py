"""Format 2 against format 1 end to end: `backup_now` and `restore_backup` through the server, in
the same run, on the same tree (issue 16: "v2 full backup and restore within 10% of v1's time").

Used by ``bench/run.py --v2``: one app backed up in format 1 (the default) and in format 2
(``format = 2`` in its settings), then each backup restored (``safety_backup: false``),
interleaved, best of N. Prints and returns one PASS/FAIL line per operation: format 2's best time
within :data:`LIMIT` of format 1's.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from _dataset import link_tree
from _measure import settle_schedule
from _services import Services

LIMIT = 1.10
APP = "benchv2/production"


def v2_against_v1(services: Services, dataset: Path, repeat: int) -> dict[str, Any]:
    """Best-of-``repeat`` seconds of backup and restore in each format, sizes, and the verdicts."""
    link_tree(dataset, services.app_data(APP))
    payloads = {fmt: {"app": APP, "backup": dataclasses.replace(services.settings, format=fmt).to_dict()}
                for fmt in (1, 2)}
    settle_schedule(services, APP, payloads[1]["backup"])
    seconds: dict[str, list[float]] = {"backup_v1": [], "backup_v2": [], "restore_v1": [], "restore_v2": []}
    made: dict[int, dict[str, Any]] = {}
    for _ in range(repeat):
        for fmt in (1, 2):
            started = time.perf_counter()
            made[fmt] = services.call("backup_now", payloads[fmt])
            seconds[f"backup_v{fmt}"].append(time.perf_counter() - started)
        for fmt in (1, 2):
            started = time.perf_counter()
            services.call("restore_backup",
                          {"app": APP, "backup_id": made[fmt]["id"], "safety_backup": False})
            seconds[f"restore_v{fmt}"].append(time.perf_counter() - started)
    if made[2]["encryption"]["algorithm"] == made[1]["encryption"]["algorithm"]:
        raise SystemExit("format = 2 did not make a format-2 backup: the benchmark is broken")
    best = {name: min(runs) for name, runs in seconds.items()}
    lines = []
    for op in ("backup", "restore"):
        v1, v2 = best[f"{op}_v1"], best[f"{op}_v2"]
        verdict = "PASS" if v2 <= v1 * LIMIT else "FAIL"
        lines.append(f"format 2 {op}: {v2:.2f} s against format 1's {v1:.2f} s "
                     f"({v2 / v1 - 1:+.1%}; limit +{LIMIT - 1:.0%}): {verdict}")
    for line in lines:
        print(line, flush=True)
    return {"best_seconds": best, "runs": seconds, "archive_bytes_v1": made[1]["size_bytes"],
            "archive_bytes_v2": made[2]["size_bytes"], "verdicts": lines}
