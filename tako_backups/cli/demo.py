"""``tako demo``: a real backup and restore on this machine in one command, no cloud account."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import typer

from .context import get_globals

demo_app = typer.Typer(name="demo", rich_markup_mode=None, add_completion=False,
                       help="Run a real backup and restore against local servers (loopback only).")


@demo_app.command()
def demo(
    ctx: typer.Context,
    keep: bool = typer.Option(False, "--keep", help="Leave the servers running and say how to use them."),
    directory: Path | None = typer.Option(None, "--dir", help="Work folder (default: a new temp folder)."),
    s3_port: int = typer.Option(8333, "--s3-port", help="Loopback port for the local S3 server."),
    server_port: int = typer.Option(9844, "--server-port", help="Loopback port for tako-server."),
) -> None:
    """Start SeaweedFS and tako-server on 127.0.0.1, deploy examples/notes-app, then run
    deploy → now → list → status → download → verify → damage → restore, printing each command."""
    from ..demo.scenario import Demo

    opts = get_globals(ctx)
    out = opts.out
    root = Path(tempfile.mkdtemp(prefix="tako-demo-")) if directory is None else directory.resolve()
    root.mkdir(parents=True, exist_ok=True)
    run = Demo(root=root, s3_port=s3_port, server_port=server_port, out=out)
    finished = False
    try:
        run.start()
        run.run()
        finished = True
    finally:
        if keep and finished:
            out.line("")
            for line in run.keep_message():
                out.line(line)
        else:
            run.stop()
            if directory is None:
                shutil.rmtree(root, ignore_errors=True)
    out.result("demo", {"root": str(root), "kept": keep})
