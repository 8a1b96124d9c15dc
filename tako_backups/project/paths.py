"""Where Tako keeps the user's files: ``$TAKO_HOME`` when set, else the platform's dirs."""

from __future__ import annotations

import os
from pathlib import Path

TAKO_HOME_ENV = "TAKO_HOME"


def _tako_home() -> Path | None:
    home = os.environ.get(TAKO_HOME_ENV, "").strip()
    return Path(home).expanduser() if home else None


def config_dir() -> Path:
    """``$TAKO_HOME``, else the platform's user config dir for ``tako`` (``~/.config/tako``)."""
    home = _tako_home()
    if home is not None:
        return home
    from platformdirs import user_config_dir

    return Path(user_config_dir("tako", appauthor=False))


def data_dir() -> Path:
    """``$TAKO_HOME``, else the platform's user data dir for ``tako`` (``~/.local/share/tako``)."""
    home = _tako_home()
    if home is not None:
        return home
    from platformdirs import user_data_dir

    return Path(user_data_dir("tako", appauthor=False))


def keys_dir() -> Path:
    """The folder of environment key files (``<data dir>/keys``)."""
    return data_dir() / "keys"


def servers_config_path() -> Path:
    """The global ``config.toml`` holding the user's servers."""
    return config_dir() / "config.toml"
