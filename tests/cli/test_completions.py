"""The committed completions are current, and the bash one really completes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_completions_are_current() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gen_completions
    finally:
        sys.path.pop(0)
    for name, text in gen_completions.render().items():
        committed = (ROOT / "completions" / name).read_text()
        assert committed == text, f"completions/{name} is stale: run python scripts/gen_completions.py"


def _bash_complete(*words: str) -> list[str]:
    script = ROOT / "completions" / "tako.bash"
    line = " ".join(words)
    cmd = (f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; "
           "_tako_complete; printf '%s\\n' \"${COMPREPLY[@]}\"")
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=True).stdout
    return out.split()


def test_bash_completes_commands_and_options() -> None:
    assert "storages" in _bash_complete("tako", "")
    assert _bash_complete("tako", "storages", "cr") == ["credentials"]
    assert "--secret-access-key" in _bash_complete("tako", "storages", "add", "--")
    assert "--env" in _bash_complete("tako", "--json", "storages", "list", "--e")
