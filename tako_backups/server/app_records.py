"""Small per-app JSON records the server keeps next to its settings (``state/{kind}/{name}.{env}.json``):
the last drill, the state of the backup copy. They hold no secret, so they are plain JSON (mode
0600, written atomically); a damaged record is logged and read as none."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..primitives.atomic_files import os_reason, write_atomic
from ..primitives.names import check_app_id

__all__ = ["AppRecords"]

log = logging.getLogger(__name__)


class AppRecords:
    """One JSON object per app under ``state_dir/kind``; ``what`` names it in messages. Thread-safe."""

    def __init__(self, state_dir: Path, kind: str, what: str) -> None:
        self.folder = Path(state_dir) / kind
        self.what = what
        self.lock = threading.RLock()

    def read(self, app: str) -> Any:
        """The app's record as parsed JSON, or None when there is none or it cannot be read or
        parsed (logged)."""
        path = self.path(app)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read the %s of %s (%s): %s", self.what, app, path, exc.strerror)
            return None
        try:
            return json.loads(text)
        except ValueError:
            log.warning("ignoring the damaged %s record %s", self.what, path)
            return None

    def write(self, app: str, record: Any) -> None:
        """Replace the app's record. Raises ConfigError when it cannot be written."""
        path = self.path(app)
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomic(path, json.dumps(record).encode(), mode=0o600)
        except OSError as exc:
            raise ConfigError(f"Cannot save the {self.what} of app '{app}' ({path}): "
                              f"{os_reason(exc)}.") from None

    def path(self, app: str) -> Path:
        name, env = check_app_id(app)
        return self.folder / f"{name}.{env}.json"
