"""Bind signed requests to this server: a body that names another server as its target is refused.

Our CLI puts the label of the server it means (the ``server_name`` that server's ``server_info``
answers) in every signed body as ``target``, so a request recorded on its way to one server does
not run on another that trusts the same key. Labels are compared the way the bucket prefix spells
them (:func:`~tako_backups.primitives.names.sanitize_segment`). Bodies without a target (Tako's
CLI) are accepted unless the server requires one (``serve --require-target``). A refusal is a 400
with its own text (no other key would help, so it is not one of Tako's two 401 texts).
"""

from __future__ import annotations

from ..errors import TakoError
from ..primitives.names import sanitize_segment

__all__ = ["TargetError", "check_target"]


class TargetError(TakoError):
    """A signed request is not meant for this server (answered with HTTP 400: no other key helps)."""


def check_target(target: str | None, server_name: str, *, required: bool) -> None:
    """Raise TargetError when ``target`` names another server than ``server_name``, or is missing
    while ``required``."""
    if target is None:
        if required:
            raise TargetError("This server accepts only requests that name it as their target (it runs with "
                              "--require-target); send them with tako-backups' tako CLI.")
        return
    if sanitize_segment(target) != sanitize_segment(server_name):
        raise TargetError(f"This request is for server '{target}', not this server "
                          f"('{server_name}'); it was replayed from another server, or config.toml "
                          "points at the wrong host.")
