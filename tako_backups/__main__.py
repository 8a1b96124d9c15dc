"""``python -m tako_backups``: the ``tako`` command line."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
