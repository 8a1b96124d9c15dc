#!/usr/bin/env python3
"""Benchmark tako-backups against `tar | zstd`, `zstd -d | tar -x` and restic, best of N.

    .venv/bin/python bench/run.py [--mb 1024] [--repeat 3] [--big] [--json OUT] [--cache DIR]
                                  [--only archive,backup,restore,cli] [--no-latest] [--v2]

Builds (once, cached by size) the dataset of tests/support/dataset.py, starts SeaweedFS and a
real `tako-server serve` on 127.0.0.1, and measures in one run: the archive stage alone, backup and
restore end to end through the signed RPC, the server's peak RSS and temporary disk, and the CLI's
start-up time. Prints a table, writes JSON (bench/results/ by default) and bench/LATEST.md.
`--big` adds a 4096 MB run for the RSS growth (needs ~15 GB of free disk and several minutes).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(BENCH), str(ROOT)]

import _measure  # noqa: E402
import format_v2_measure  # noqa: E402
from _dataset import ensure_dataset, link_tree  # noqa: E402
from _report import machine, markdown, text_table, verdict_lines  # noqa: E402
from _restic import ResticS3  # noqa: E402
from _services import Probe, running_services  # noqa: E402

from tako_backups.core.tree_copy import tree_bytes  # noqa: E402

PARTS = ("archive", "backup", "restore", "cli", "partial")
BIG_MB = 4096


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=1024, help="dataset size in MB (default 1024)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measure; the best counts")
    ap.add_argument("--big", action="store_true", help=f"also back up and restore {BIG_MB} MB for RSS")
    ap.add_argument("--json", type=Path, help="where to write the JSON (default bench/results/)")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("TAKO_BENCH_CACHE", "/tmp/tako-bench")),
                    help="datasets and scratch space (default $TAKO_BENCH_CACHE or /tmp/tako-bench)")
    ap.add_argument("--only", default=",".join(PARTS), help="comma-separated subset of " + ",".join(PARTS))
    ap.add_argument("--no-latest", action="store_true", help="do not rewrite bench/LATEST.md")
    ap.add_argument("--v2", action="store_true",
                    help="also back up and restore in format 2 against format 1 (PASS/FAIL lines)")
    args = ap.parse_args(argv)
    args.cache = args.cache.resolve()  # the reference commands run in the dataset folder
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    unknown = parts - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown part(s): {', '.join(sorted(unknown))}")
    notes: list[str] = []
    results: dict[str, Any] = {"date": dt.datetime.now().isoformat(timespec="seconds"),
                               "args": {"mb": args.mb, "repeat": args.repeat, "big": args.big,
                                        "only": sorted(parts)},
                               "machine": machine(), "notes": notes}
    dataset = ensure_dataset(args.cache, args.mb)
    results["dataset_bytes"] = tree_bytes(dataset)
    scratch = args.cache / f"run-{os.getpid()}"
    scratch.mkdir(parents=True)
    try:
        if "archive" in parts:
            print("archive stage ...", flush=True)
            results["archive"] = _measure.archive_stage(dataset, scratch, args.repeat)
        if "partial" in parts:  # one file back from format 2 (bench/partial_extract.py)
            import partial_extract
            print("partial extract ...", flush=True)
            results["partial_extract"] = partial_extract.run(dataset, scratch, args.repeat)
            notes.extend(partial_extract.report(results["partial_extract"]))
        if parts & {"backup", "restore"} or args.big or args.v2:
            run_server_parts(args, parts, dataset, scratch, results, notes)
        elif "cli" in parts:
            print("cli ...", flush=True)
            results["cli"] = _measure.cli_times(scratch, args.repeat)
            notes.append("No server in this run: `tako storages list` stands in for `tako backups list`.")
        if "cli" in results and results["cli"]["exit_codes"]["list"] != 0:
            notes.append(f"`{results['cli']['list_command']}` exited with "
                         f"{results['cli']['exit_codes']['list']}: its time is that of a failure.")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print()
    print(text_table(results))
    print()
    print("\n".join(verdict_lines(results)))
    for note in notes:
        print("note:", note)
    out = args.json or BENCH / "results" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out}")
    if not args.no_latest:
        command = "bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
        (BENCH / "LATEST.md").write_text(markdown(results, command.strip()))
        print(f"wrote {BENCH / 'LATEST.md'}")
    return 0


def run_server_parts(args: argparse.Namespace, parts: set[str], dataset: Path, scratch: Path,
                     results: dict[str, Any], notes: list[str]) -> None:
    restic = shutil.which("restic")
    if restic is None:
        notes.append("restic is not installed (apt-get install restic): its column is skipped.")
    if "restore" in parts:
        notes.append("restore_backup without its safety copy flushes the restored tree to disk (syncfs) "
                     "before swapping it in, so the `sync -f` rows are the like-for-like references. By "
                     "default a restore keeps the replaced tree and uploads it after the app runs again: "
                     "its row times the call, its peak RSS covers the call and the upload.")
    with running_services(scratch / "services") as services:
        _warm_up(services)
        if args.v2:
            print("format 2 against format 1 ...", flush=True)
            results["format_v2"] = format_v2_measure.v2_against_v1(services, dataset, args.repeat)
            notes.extend(results["format_v2"]["verdicts"])
        app = "bench/production"
        port = _measure.deploy_answering_app(services, app, dataset)
        restic_s3 = ResticS3(services, scratch) if restic else None
        print("backup ...", flush=True)
        results["backup"] = _measure.backups(services, app, dataset if restic else None, scratch,
                                             args.repeat, restic_s3)
        if "restore" in parts:
            print("restore ...", flush=True)
            results["restore"] = _measure.restores(services, app, results["backup"]["last"], scratch,
                                                   args.repeat, restic_s3, port)
        if args.big:
            big = ensure_dataset(args.cache, BIG_MB)
            results["big"] = big_run(services, big, BIG_MB)
        if "cli" in parts:
            print("cli ...", flush=True)
            results["cli"] = _measure.cli_times(scratch, args.repeat, services)


def big_run(services: Any, dataset: Path, mb: int) -> dict[str, Any]:
    """One backup and one restore of the big tree, for the server's peak RSS."""
    print(f"backup + restore at {mb} MB ...", flush=True)
    app = "big/production"
    link_tree(dataset, services.app_data(app))
    pid = services.server.process.pid
    with Probe(pid, services.tmp_dir) as probe:
        started = time.perf_counter()
        info = services.call("backup_now", {"app": app, "backup": services.settings.to_dict()})
        backup_seconds = time.perf_counter() - started
    backup_rss, disk = probe.peak_rss_kb / 1024, probe.peak_disk / 2**20
    # The app's first drill is due now: run it here, untimed, not beside the restores below.
    services.call("drill_backup", {"app": app})
    with Probe(pid, None) as probe:
        started = time.perf_counter()
        services.call("restore_backup", {"app": app, "backup_id": info["id"], "safety_backup": False})
        restore_seconds = time.perf_counter() - started
    restore_rss = probe.peak_rss_kb / 1024
    with Probe(pid, None) as probe:  # the default restore: the kept tree uploads after the reply
        started = time.perf_counter()
        services.call("restore_backup", {"app": app, "backup_id": info["id"]})
        safe_seconds = time.perf_counter() - started
        _measure.wait_kept_verified(services, app)
    shutil.rmtree(services.app_data(app), ignore_errors=True)
    return {"mb": mb, "backup_seconds": backup_seconds, "restore_seconds": restore_seconds,
            "with_safety_seconds": safe_seconds, "backup_peak_rss_mb": backup_rss,
            "restore_peak_rss_mb": max(restore_rss, probe.peak_rss_kb / 1024),
            "peak_tmp_disk_mb": disk, "archive_bytes": info["size_bytes"]}


def _warm_up(services: Any) -> None:
    """SeaweedFS grows its volumes on a bucket's first large write; do that outside the timings."""
    store = services.store()
    block = os.urandom(1 << 20)
    with store.open_writer("_warmup/object") as upload:
        for _ in range(64):
            upload.write(block)
        upload.commit()
    store.delete("_warmup/object")


if __name__ == "__main__":
    sys.exit(main())
