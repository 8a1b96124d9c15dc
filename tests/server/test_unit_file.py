"""The systemd unit that ships in the package: systemd accepts every line of it, and it keeps the
hardening the server's safety relies on (read-only system, private /tmp, no home folders, no new
privileges, root with only the capabilities it needs to run apps as their own uids)."""

from __future__ import annotations

import configparser
import importlib.resources
import shutil
import subprocess
import sys
from pathlib import Path

UNIT = Path(str(importlib.resources.files("tako_backups") / "server" / "tako-server.service"))
TAKO_SERVER = Path(sys.executable).parent / "tako-server"


def service_section() -> dict[str, str]:
    parser = configparser.ConfigParser(strict=True, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return dict(parser["Service"])


def test_systemd_accepts_every_line_of_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: .ci/run installs Debian's systemd package"
    assert TAKO_SERVER.is_file(), TAKO_SERVER
    unit = tmp_path / "tako-server.service"  # where this checkout installed tako-server
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/tako-server", str(TAKO_SERVER)))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")

    unit.write_text(unit.read_text().replace("PrivateTmp=yes", "PrivateTmp=yes\nProtectEverything=yes"))
    complained = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert "Unknown key" in complained.stderr and "ProtectEverything" in complained.stderr, "it can fail"


def test_unit_is_hardened_and_runs_apps_as_their_own_users() -> None:
    service = service_section()
    start = service["ExecStart"].split()
    data_dir = start[start.index("--data-dir") + 1]
    assert start[start.index("--app-user") + 1] == "tako-app"
    assert "User" not in service and "DynamicUser" not in service, "only root starts apps as their uids"
    assert {key: service[key] for key in ("NoNewPrivileges", "ProtectSystem", "PrivateTmp", "ProtectHome",
                                          "PrivateDevices", "ProtectKernelTunables", "ProtectControlGroups",
                                          "LockPersonality", "RestrictNamespaces")} == {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes", "ProtectHome": "yes",
        "PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectControlGroups": "yes",
        "LockPersonality": "yes", "RestrictNamespaces": "yes"}
    assert service["ReadWritePaths"].split() == [data_dir]
    assert set(service["CapabilityBoundingSet"].split()) == {
        "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_FOWNER", "CAP_FSETID", "CAP_DAC_OVERRIDE",
        "CAP_DAC_READ_SEARCH", "CAP_KILL"}
    assert "RestrictSUIDSGID" not in service, "restores keep Tako's setgid app/ folders"
