"""Copying text to the clipboard as Tako does (tako/src/commands/secret/key.rs): ``pbcopy`` on
macOS, ``clip`` on Windows, else ``wl-copy``, then ``xclip -selection clipboard``, then
``xsel --clipboard --input``, each fed the text on stdin."""

from __future__ import annotations

import subprocess
import sys

from ..errors import ConfigError

LINUX_TOOLS = (("wl-copy",), ("xclip", "-selection", "clipboard"), ("xsel", "--clipboard", "--input"))


def _run(argv: tuple[str, ...], text: str) -> bool:
    """True when ``argv`` took ``text`` and exited 0. Its output is not captured: a clipboard
    tool may leave a child serving the selection, which would hold a captured pipe open."""
    try:
        done = subprocess.run(argv, input=text.encode(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=15, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def copy_to_clipboard(text: str) -> None:
    """Put ``text`` on the clipboard. Raises ConfigError with Tako's texts when no tool takes it."""
    if not text:
        raise ConfigError("Cannot copy empty key")
    if sys.platform == "darwin" or sys.platform == "win32":
        tool = ("pbcopy",) if sys.platform == "darwin" else ("clip",)
        if not _run(tool, text):
            raise ConfigError(f"Clipboard command '{tool[0]}' failed")
        return
    if not any(_run(tool, text) for tool in LINUX_TOOLS):
        raise ConfigError("Failed to copy key to clipboard (tried wl-copy, xclip, xsel).")
