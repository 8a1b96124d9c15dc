"""``tako demo``: a real backup and restore on this machine, with no cloud account.

A local SeaweedFS (loopback only, telemetry off, auth on), a ``tako-server`` on loopback running
``examples/notes-app``, a generated project and SSH key, then the real commands a user types.
"""
