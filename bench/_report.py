"""Machine facts, the figures table (text and Markdown) and the targets it is judged against."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from typing import Any

# Ratios are ours / reference; sizes in MB, times in ms.
TARGETS = {"archive": 1.3, "backup": 0.5, "restore": 1.5, "help_ms": 150, "rss_mb": 150,
           "rss_growth": 1.10}
# Issue 14's targets, judged PASS/FAIL by verdict_lines (restic on the same SeaweedFS).
GOALS = {"restore_vs_restic": 1.0, "downtime_s": 1.0, "backup_vs_restic": 0.5, "rss_mb": 100}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in open("/proc/meminfo", encoding="utf-8"):
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory_gb": round(mem_kb / 2**20, 1),
            "python": sys.version.split()[0], "kernel": platform.release(),
            "zstd": _version(["zstd", "--version"]), "tar": _version(["tar", "--version"]),
            "restic": _version(["restic", "version"]), "load_avg": os.getloadavg()}


def _version(cmd: list[str]) -> str:
    """``zstd v1.5.4``: the tool's name and the first version-looking word it prints."""
    try:
        text = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return f"{cmd[0]} missing"
    found = re.search(r"v?\d+\.\d+(\.\d+)?", text)
    return f"{cmd[0]} {found.group(0)}" if found else f"{cmd[0]} (unknown version)"


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(measure, ours, reference, ratio, target) rows of the table."""
    out: list[tuple[str, str, str, str, str]] = []
    mb = results["args"]["mb"]
    a = results.get("archive")
    if a:
        out.append((f"archive stage, {mb} MB (null sink)", _s(a["ours"]["best"]),
                    f"tar|zstd -T0 >file {_s(a['tar_zstd_file']['best'])}",
                    _x(a["ours"]["best"] / a["tar_zstd_file"]["best"]), f"<= {TARGETS['archive']}x"))
        out.append(("  same, reference into /dev/null", "", _s(a["tar_zstd_null"]["best"]),
                    _x(a["ours"]["best"] / a["tar_zstd_null"]["best"]), ""))
        if "tar_zstd_cpu_seconds" in a:
            out.append(("  same, CPU seconds (user + sys)", _s(a["ours_cpu_seconds"]),
                        _s(a["tar_zstd_cpu_seconds"]),
                        _x(a["ours_cpu_seconds"] / a["tar_zstd_cpu_seconds"]), ""))
    b = results.get("backup")
    if b:
        ref = b.get("restic")
        out.append((f"backup_now to SeaweedFS, {mb} MB", _s(b["ours"]["best"]),
                    f"restic backup {_s(ref['best'])}" if ref else "restic missing",
                    _x(b["ours"]["best"] / ref["best"]) if ref else "-", ""))
        s3 = b.get("restic_s3")
        if s3:
            out.append(("  same, restic backup to the same SeaweedFS", "", _s(s3["best"]),
                        _x(b["ours"]["best"] / s3["best"]), f"<= {GOALS['backup_vs_restic']}x"))
        if s3 and "restic_s3_cpu" in b:
            ours, theirs = b["ours_cpu"], b["restic_s3_cpu"]
            out.append(("  same, CPU seconds (fastest run): tool / SeaweedFS",
                        f"{_s(ours['tool'])} / {_s(ours['s3'])}",
                        f"restic {_s(theirs['tool'])} / {_s(theirs['s3'])}",
                        _x((ours["tool"] + ours["s3"]) / (theirs["tool"] + theirs["s3"])), ""))
            cores = results["machine"]["nproc"]
            out.append((f"  same, CPU floor on {cores} cores: (tool + SeaweedFS) / cores",
                        _s(cpu_floor(results)), f"{GOALS['backup_vs_restic']}x restic: "
                        f"{_s(GOALS['backup_vs_restic'] * s3['best'])}", "", ""))
    r = results.get("restore")
    if r:
        base = r["zstd_tar"]["best"] + r["download"]["best"]
        out.append((f"restore_backup (no safety backup), {mb} MB", _s(r["ours"]["best"]),
                    f"zstd -d|tar -x {_s(r['zstd_tar']['best'])} + GET {_s(r['download']['best'])}",
                    _x(r["ours"]["best"] / base), f"<= {TARGETS['restore']}x"))
        synced = r["zstd_tar_sync"]["best"] + r["download"]["best"]
        out.append(("  same, reference ending in `sync -f`", "",
                    f"{_s(r['zstd_tar_sync']['best'])} + GET {_s(r['download']['best'])}",
                    _x(r["ours"]["best"] / synced), ""))
        if "with_safety_backup" in r:
            out.append(("restore_backup default (kept tree as safety copy)",
                        _s(r["with_safety_backup"]["best"]), "", "", ""))
        if "restic_s3_sync" in r:
            safe = r["with_safety_backup"]["best"]
            out.append(("  same, against restic restore from the same SeaweedFS + `sync -f`", "",
                        _s(r["restic_s3_sync"]["best"]), _x(safe / r["restic_s3_sync"]["best"]),
                        f"<= {GOALS['restore_vs_restic']}x"))
            out.append(("  same, against restic restore alone (no flush)", "", _s(r["restic_s3"]["best"]),
                        _x(safe / r["restic_s3"]["best"]), ""))
        if "kept_upload_verified" in r:
            out.append(("  kept tree uploaded and verified (background, from the call)",
                        _s(r["kept_upload_verified"]["best"]), "", "", ""))
        if "downtime_server" in r:
            seen = r.get("downtime_seen")
            out.append(("  app downtime, worst run: server / bench probe",
                        f"{r['downtime_server']['worst']:.3f} s"
                        + (f" / {seen['worst']:.3f} s" if seen else ""), "", "",
                        f"<= {GOALS['downtime_s']:g} s"))
    for label, key in (("backup", "backup"), ("restore", "restore")):
        part = results.get(key)
        if part:
            peak = max(part["peak_rss_mb"], part.get("with_safety_peak_rss_mb", 0))
            out.append((f"server peak RSS during {label}, {mb} MB", f"{peak:.0f} MB",
                        "", "", f"<= {GOALS['rss_mb']} MB"))
    big = results.get("big")
    if big:
        for label in ("backup", "restore"):
            small = results.get(label, {}).get("peak_rss_mb")
            grow = big[f"{label}_peak_rss_mb"] / small if small else None
            out.append((f"server peak RSS during {label}, {big['mb']} MB",
                        f"{big[f'{label}_peak_rss_mb']:.0f} MB",
                        f"{small:.0f} MB at {mb} MB" if small else "",
                        _x(grow) if grow else "-", f"<= {GOALS['rss_mb']} MB"))
        out.append((f"backup_now / restore_backup, {big['mb']} MB",
                    f"{_s(big['backup_seconds'])} / {_s(big['restore_seconds'])}", "", "", ""))
    if b:
        out.append(("peak tmp/ disk during backup", f"{b['peak_tmp_disk_mb']:.0f} MB",
                    "largest SQLite snapshot", "", ""))
    c = results.get("cli")
    if c:
        out.append(("tako --help", f"{c['help']['best'] * 1000:.0f} ms", "", "",
                    f"<= {TARGETS['help_ms']} ms"))
        out.append((c["list_command"], f"{c['list']['best'] * 1000:.0f} ms", "", "", ""))
    return out


def cpu_floor(results: dict[str, Any]) -> float:
    """The least wall time our backup's CPU seconds and SeaweedFS's allow on this machine's cores."""
    used = results["backup"]["ours_cpu"]
    return float(used["tool"] + used["s3"]) / (results["machine"]["nproc"] or 1)


def verdicts(results: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """(target, passed, figure) for each of issue 14's targets this run measured."""
    out: list[tuple[str, bool, str]] = []
    mb = results["args"]["mb"]
    r, b, big = results.get("restore"), results.get("backup"), results.get("big")
    if r and "restic_s3_sync" in r:
        ratio = r["with_safety_backup"]["best"] / r["restic_s3_sync"]["best"]
        out.append((f"restore (default, kept tree) <= {GOALS['restore_vs_restic']}x restic restore from the "
                    f"same SeaweedFS (both flush), {mb} MB", ratio <= GOALS["restore_vs_restic"],
                    f"{_x(ratio)} ({_s(r['with_safety_backup']['best'])} vs "
                    f"{_s(r['restic_s3_sync']['best'])})"))
    if r and "downtime_server" in r:
        worst = max(r["downtime_server"]["worst"], r.get("downtime_seen", {}).get("worst", 0.0))
        seen = r.get("downtime_seen")
        out.append((f"app downtime during a restore <= {GOALS['downtime_s']:g} s, {mb} MB (worst run)",
                    worst <= GOALS["downtime_s"],
                    f"server {r['downtime_server']['worst']:.3f} s"
                    + (f", bench probe {seen['worst']:.3f} s" if seen else ", no bench probe")))
    if b and "restic_s3" in b:
        ratio = b["ours"]["best"] / b["restic_s3"]["best"]
        out.append((f"backup now <= {GOALS['backup_vs_restic']}x restic backup to the same SeaweedFS, "
                    f"{mb} MB", ratio <= GOALS["backup_vs_restic"],
                    f"{_x(ratio)} ({_s(b['ours']['best'])} vs {_s(b['restic_s3']['best'])}"
                    + (f"; CPU floor {_s(cpu_floor(results))} on {results['machine']['nproc']} cores)"
                       if "ours_cpu" in b else ")")))
    peaks = []
    if b:
        peaks.append(("backup", mb, b["peak_rss_mb"]))
    if r:
        peaks.append(("restore", mb, max(r["peak_rss_mb"], r.get("with_safety_peak_rss_mb", 0))))
    if big:
        peaks += [("backup", big["mb"], big["backup_peak_rss_mb"]),
                  ("restore", big["mb"], big["restore_peak_rss_mb"])]
    for label, size, peak in peaks:
        out.append((f"server peak RSS during {label} <= {GOALS['rss_mb']} MB, {size} MB",
                    peak <= GOALS["rss_mb"], f"{peak:.0f} MB"))
    return out


def verdict_lines(results: dict[str, Any]) -> list[str]:
    """One ``PASS|FAIL  target: figure`` line per target."""
    return [f"{'PASS' if ok else 'FAIL'}  {what}: {figure}" for what, ok, figure in verdicts(results)]


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def _x(ratio: float) -> str:
    return f"{ratio:.2f}x"


HEADER = ("measure (best of N)", "ours", "reference", "ratio", "target")


def text_table(results: dict[str, Any]) -> str:
    table = [HEADER, *rows(results)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    lines = ("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in table)
    return "\n".join(line.rstrip() for line in lines)


def markdown(results: dict[str, Any], command: str) -> str:
    m = results["machine"]
    lines = [
        "# Latest benchmark", "",
        f"Command: `{command}` ({results['date']}, best of {results['args']['repeat']}).", "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gb']} GB RAM, Python {m['python']}, "
        f"Linux {m['kernel']}; {m['zstd']}; {m['tar']}; {m['restic']}. Load average at start "
        f"{m['load_avg'][0]:.2f} (the machine is shared: other jobs run beside the benchmark).", "",
        "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(cell.strip().replace("|", "\\|") or " " for cell in r) + " |"
              for r in rows(results)]
    lines += ["", "Targets (issue 14):", "", "| result | target | figure |", "|---|---|---|"]
    lines += [f"| {'PASS' if ok else 'FAIL'} | {what} | {figure} |" for what, ok, figure in verdicts(results)]
    notes = results.get("notes") or []
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"
