"""The measurements: each returns plain dicts of seconds (every run kept, best = min)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _app
from _dataset import link_tree
from _restic import ResticS3
from _services import Probe, Services, children_cpu_seconds, cpu_seconds

from tako_backups.models import BackupInfo
from tests.support.tako_server import let_apps_reach

ROOT = Path(__file__).resolve().parents[1]
TAKO = Path(sys.executable).parent / "tako"


def summary(runs: list[float]) -> dict[str, Any]:
    ordered = sorted(runs)
    return {"best": ordered[0], "median": ordered[len(ordered) // 2], "worst": ordered[-1],
            "runs": runs}


def timed_shell(command: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> float:
    return timed_shell_cpu(command, cwd, env)[0]


def timed_shell_cpu(command: str, cwd: Path | None = None,
                    env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system of every process of the pipeline)."""
    before = children_cpu_seconds()
    started = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, check=True,
                   env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    return wall, children_cpu_seconds() - before


def archive_stage(root: Path, scratch: Path, repeat: int) -> dict[str, Any]:
    """Ours (fresh process per run, null sink) against `tar -cf - | zstd -3 -T0` into a file and
    into /dev/null, interleaved run by run so both see the same machine load; at least 5 runs
    (they are short). CPU seconds too: less sensitive to other jobs than wall time."""
    ours, ref_file, ref_null, cpu, ref_cpu, size = [], [], [], [], [], 0
    out = scratch / "ref.tar.zst"
    for _ in range(max(repeat, 5)):
        wall, used = timed_shell_cpu(f"tar -cf - app tako | zstd -3 -T0 -q > {out}", cwd=root)
        ref_file.append(wall)
        ref_cpu.append(used)
        out.unlink()
        ref_null.append(timed_shell("tar -cf - app tako | zstd -3 -T0 -q > /dev/null", cwd=root))
        done = subprocess.run([sys.executable, str(ROOT / "bench" / "archive_stage.py"), str(root),
                               str(scratch)], check=True, capture_output=True, text=True)
        run = json.loads(done.stdout)
        ours.append(run["seconds"])
        cpu.append(run["cpu_user"] + run["cpu_sys"])
        size = run["size_bytes"]
    return {"ours": summary(ours), "tar_zstd_file": summary(ref_file),
            "tar_zstd_null": summary(ref_null), "ours_cpu_seconds": min(cpu),
            "tar_zstd_cpu_seconds": min(ref_cpu), "archive_bytes": size}


def deploy_answering_app(services: Services, app: str, dataset: Path) -> int:
    """Deploy ``app`` over a hard-linked copy of ``dataset`` with the answering app of
    :mod:`_app` as its runtime (so restores stop and start a real process); returns its port."""
    services.call("deploy", {"app": app, "backup": None, "runtime": None})
    link_tree(dataset, services.app_data(app))
    let_apps_reach(services.app_data(app))  # the app runs as a uid of its own when we are root
    port = _app.free_port()
    services.call("deploy", {"app": app, "backup": services.settings.to_dict(),
                             "runtime": _app.runtime(port)})
    _app.wait_answering(port)
    settle_schedule(services, app)
    return port


def settle_schedule(services: Services, app: str, backup: dict[str, Any] | None = None) -> None:
    """One untimed backup (with ``backup`` settings, default the app's own) and one drill of
    ``app``, so that neither the server's scheduled backup (due when an app has none) nor its
    weekly restore drill (due when none ran) starts in the middle of a measurement: a drill
    beside a timed backup doubles the server's work and memory. A scheduled job already running
    makes the backup wait for it."""
    deadline = time.monotonic() + 600
    while True:
        try:
            services.call("backup_now", {"app": app, "backup": backup})
            break
        except Exception as exc:  # ServerReplyError: the scheduler's own first backup is running
            if "already running" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(1)
    services.call("drill_backup", {"app": app})


def backups(services: Services, app: str, restic_source: Path | None, scratch: Path,
            repeat: int, restic_s3: ResticS3 | None = None) -> dict[str, Any]:
    """`backup_now` through the server (peak RSS, peak tmp/ disk) against `restic backup` into a
    fresh local repository and into a fresh repository on the same SeaweedFS, interleaved."""
    ours, restic, restic_s3_runs, rss, disk = [], [], [], [], []
    ours_cpu, restic_cpu = [], []
    info: dict[str, Any] = {}
    payload: dict[str, Any] = {"app": app, "backup": services.settings.to_dict()}
    server, weed = services.server.process.pid, services.seaweed.process.pid
    for _ in range(repeat):
        with Probe(server, services.tmp_dir) as probe:
            before = (cpu_seconds(server), cpu_seconds(weed))
            started = time.perf_counter()
            info = services.call("backup_now", payload)
            ours.append(time.perf_counter() - started)
            ours_cpu.append((cpu_seconds(server) - before[0], cpu_seconds(weed) - before[1]))
        rss.append(probe.peak_rss_kb)
        disk.append(probe.peak_disk)
        if restic_source is not None:
            restic.append(restic_backup(restic_source, scratch))
            if restic_s3 is not None:
                restic_s3_runs.append(restic_s3.backup(restic_source))
                restic_cpu.append(restic_s3.last_cpu)
    result: dict[str, Any] = {
        "ours": summary(ours), "peak_rss_mb": max(rss) / 1024, "rss_before_mb": probe.rss_before_kb / 1024,
        "peak_tmp_disk_mb": max(disk) / 2**20, "archive_bytes": info["size_bytes"], "last": info,
        "ours_cpu": _best_run_cpu(ours, ours_cpu),
    }
    if restic:
        result["restic"] = summary(restic)
    if restic_s3_runs:
        result["restic_s3"] = summary(restic_s3_runs)
        result["restic_s3_cpu"] = _best_run_cpu(restic_s3_runs, restic_cpu)
    return result


def _best_run_cpu(walls: list[float], cpu: list[tuple[float, float]]) -> dict[str, float]:
    """The CPU seconds of the fastest run: the tool's own process(es) and SeaweedFS's."""
    tool, s3 = cpu[walls.index(min(walls))]
    return {"tool": tool, "s3": s3}


def restic_backup(source: Path, scratch: Path) -> float:
    repo = scratch / "restic-repo"
    shutil.rmtree(repo, ignore_errors=True)
    env = {**os.environ, "RESTIC_PASSWORD": "bench", "RESTIC_CACHE_DIR": str(scratch / "restic-cache")}
    subprocess.run(["restic", "init", "-q", "--repo", str(repo)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    try:
        return timed_shell(f"restic backup -q --repo {repo} app tako", cwd=source, env=env)
    finally:
        shutil.rmtree(repo, ignore_errors=True)
        shutil.rmtree(scratch / "restic-cache", ignore_errors=True)


def restores(services: Services, app: str, info_dict: dict[str, Any], scratch: Path,
             repeat: int, restic_s3: ResticS3 | None = None, port: int | None = None) -> dict[str, Any]:
    """`restore_backup` through the server without its safety copy (peak RSS) and as called by
    default (the replaced tree kept and uploaded in the background: the call, the app's downtime
    as the server reports it and as the bench's probe sees it, and the upload until verified,
    peak RSS through all of it) against `zstd -d | tar -x` of the same archive plus the plain
    download of the object, and `restic restore` from the same SeaweedFS, interleaved."""
    info = BackupInfo.from_dict(info_dict)
    store = services.store()
    plain = scratch / "restore-ref.tar.zst"
    download = [_download(store, info.archive_key) for _ in range(repeat)]
    _decrypt_to(store, info, services.settings.backup_keys[-1].key, plain)
    ours, ref, ref_sync, rss, safe, safe_rss, uploads = [], [], [], [], [], [], []
    down_server: list[float] = []
    down_seen: list[float] = []
    restic_alone: list[float] = []
    restic_sync: list[float] = []
    target = scratch / "restore-ref"
    pid = services.server.process.pid
    for _ in range(repeat):
        subprocess.run(["sync"], check=True)  # as before restic's: nobody pays for earlier dirty pages
        with Probe(pid, None) as probe:
            started = time.perf_counter()
            services.call("restore_backup", {"app": app, "backup_id": info.id, "safety_backup": False})
            ours.append(time.perf_counter() - started)
        rss.append(probe.peak_rss_kb)
        subprocess.run(["sync"], check=True)
        with Probe(pid, None) as probe:
            with _app.AnswerProbe(port) if port is not None else contextlib.nullcontext() as seen:
                started = time.perf_counter()
                reply = services.client.call_reply("restore_backup", {"app": app, "backup_id": info.id},
                                                   timeout=3600)
                safe.append(time.perf_counter() - started)
            uploads.append(wait_kept_verified(services, app) - started)
        safe_rss.append(probe.peak_rss_kb)
        down_server.append(reply["downtime_seconds"])
        if seen is not None:
            down_seen.append(seen.longest_gap)
        if restic_s3 is not None and restic_s3.last_repo is not None:
            alone, synced = restic_s3.restore(target)
            restic_alone.append(alone)
            restic_sync.append(synced)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        ref.append(timed_shell(f"zstd -d -c -q {plain} | tar -xf - -C {target}"))
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        ref_sync.append(timed_shell(f"zstd -d -c -q {plain} | tar -xf - -C {target} && sync -f {target}"))
        shutil.rmtree(target, ignore_errors=True)
    plain.unlink()
    if not (services.app_data(app) / "app").is_dir():
        raise SystemExit("restore left no app/ folder: the benchmark's restore is broken")
    result: dict[str, Any] = {
        "ours": summary(ours), "with_safety_backup": summary(safe), "zstd_tar": summary(ref),
        "zstd_tar_sync": summary(ref_sync), "download": summary(download),
        "peak_rss_mb": max(rss) / 1024, "with_safety_peak_rss_mb": max(safe_rss) / 1024,
        "kept_upload_verified": summary(uploads), "downtime_server": summary(down_server),
    }
    if down_seen:
        result["downtime_seen"] = summary(down_seen)
    if restic_alone:
        result["restic_s3"] = summary(restic_alone)
        result["restic_s3_sync"] = summary(restic_sync)
    return result


def wait_kept_verified(services: Services, app: str, timeout: float = 3600.0) -> float:
    """Wait until the app's kept tree is uploaded and verified; returns perf_counter() then."""
    deadline = time.monotonic() + timeout
    while True:
        kept = services.call("backup_status", {"app": app}).get("kept_tree") or {}
        if kept.get("upload") == "verified":
            return time.perf_counter()
        if kept.get("upload") == "failed" or time.monotonic() > deadline:
            raise SystemExit(f"the kept tree of {app} did not upload: {kept}")
        time.sleep(0.05)


def _download(store: Any, key: str) -> float:
    started = time.perf_counter()
    with store.open_read(key) as body:
        while body.read(1 << 22):
            pass
    return time.perf_counter() - started


def _decrypt_to(store: Any, info: BackupInfo, key: bytes, out: Path) -> None:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    nonce = base64.b64decode(info.encryption.nonce_base64)
    dec = Cipher(algorithms.AES(key), modes.GCM(nonce)).decryptor()
    with store.open_read(info.archive_key) as body, open(out, "wb") as f:
        while chunk := body.read(1 << 22):
            f.write(dec.update(chunk))
    dec.finalize_with_tag(base64.b64decode(info.encryption.tag_base64))


def cli_times(work: Path, repeat: int, services: Services | None = None) -> dict[str, Any]:
    """Wall time of `tako --help` and of `tako backups list --env production` against the running
    server (with ``services``; else `tako storages list`, which needs no server), each in a fresh
    process, best of at least 5."""
    project = work / "cli-project"
    home = project / "home"
    home.mkdir(parents=True, exist_ok=True)
    (project / "tako.toml").write_text(
        'name = "bench"\n\n[envs.production]\nroute = "bench.example.com"\nservers = ["la"]\n')
    if services is not None:
        (home / "config.toml").write_text(
            f'[[servers]]\nname = "la"\nhost = "127.0.0.1"\nmanagement_port = {services.server.port}\n'
            f'key_path = "{services.signer.path}"\n')
    env = {**os.environ, "TAKO_HOME": str(home)}
    listing = ["backups", "list", "--env", "production"] if services is not None else ["storages", "list"]
    runs: dict[str, list[float]] = {"help": [], "list": []}
    codes: dict[str, int] = {}
    for _ in range(max(repeat, 5)):
        for name, args in (("help", ["--help"]), ("list", listing)):
            started = time.perf_counter()
            done = subprocess.run([str(TAKO), *args], cwd=project, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
            runs[name].append(time.perf_counter() - started)
            codes[name] = done.returncode
    return {"help": summary(runs["help"]), "list": summary(runs["list"]),
            "list_command": "tako " + " ".join(listing), "exit_codes": codes}
