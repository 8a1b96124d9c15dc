"""``tako-server``: serve the management RPC, authorize a client key, or show the TLS identity.

    tako-server serve [--data-dir /opt/tako] [--host 127.0.0.1] [--port 9844] [--tls]
                      [--require-target] [--app-user tako-app]
    tako-server authorize-key PUBKEY_FILE [--data-dir /opt/tako]
    tako-server identity [--data-dir /opt/tako]

``serve`` resumes the apps it runs and the uploads of kept trees, starts the scheduler (first
check at once), then serves ``POST /rpc`` with uvicorn until SIGTERM or SIGINT; it then finishes
the requests in flight, stops the scheduler, the notifier (deliveries still waiting are logged
and dropped) and the apps, and exits 0. Request bodies carry storage secrets and backup keys, so
plain HTTP is served only on private addresses (``remote/addresses.py``); anywhere else ``--tls``
serves HTTPS with the certificate ``identity`` prints the fingerprint of. Run as root, it runs
every app as a uid of its own with the ``--app-user`` account's group (``app_users.py``), never
as root.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from .. import __version__
from ..errors import ConfigError, TakoError
from ..primitives.atomic_files import write_atomic
from ..remote.addresses import PRIVATE_RANGES, public_addresses, resolve
from ..remote.protocol import DEFAULT_PORT
from ..remote.signing import parse_authorized_keys, parse_public_key
from .app_users import DEFAULT_APP_USER, app_account
from .paths import DEFAULT_DATA_DIR, ServerPaths
from .tls import ensure_identity, load_identity

__all__ = ["authorize_key", "main", "refuse_public_plain_http", "serve"]

log = logging.getLogger("tako_backups.server")

GRACEFUL_SHUTDOWN_SECONDS = 60
NOTIFIER_CLOSE_SECONDS = 10
DATA_DIR_HELP = f"server data root (default {DEFAULT_DATA_DIR})"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tako-server`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return serve(Path(args.data_dir), args.host, args.port, args.log_level, tls=args.tls,
                         require_target=args.require_target, app_user=args.app_user)
        if args.command == "identity":
            print(load_identity(ServerPaths(Path(args.data_dir)).tls_dir).fingerprint)
            return 0
        print(authorize_key(Path(args.pubkey_file), Path(args.data_dir)))
        return 0
    except TakoError as exc:
        print(f"tako-server: {exc}", file=sys.stderr)
        return exc.exit_code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tako-server", description="Tako-compatible management server.")
    parser.add_argument("--version", action="version", version=f"tako-server {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_cmd = sub.add_parser("serve", help="serve the signed management RPC (POST /rpc)")
    serve_cmd.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help=DATA_DIR_HELP)
    serve_cmd.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    serve_cmd.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve_cmd.add_argument("--tls", action="store_true",
                           help="serve HTTPS with the certificate in <data-dir>/tls/ (made on first start); "
                                "required unless --host is a private address")
    serve_cmd.add_argument("--require-target", action="store_true",
                           help="refuse signed requests that do not name this server as their target "
                                "(Tako's CLI does not)")
    serve_cmd.add_argument("--app-user", default=DEFAULT_APP_USER, metavar="NAME",
                           help="when run as root: the account whose group lets apps through the data dir "
                                f"(made with useradd --system if missing; default {DEFAULT_APP_USER}); each "
                                "app runs as a uid and gid of its own, never as root")
    auth_cmd = sub.add_parser("authorize-key", help="allow an SSH public key to call the management RPC")
    auth_cmd.add_argument("pubkey_file", metavar="PUBKEY_FILE", help="an OpenSSH public key file (.pub)")
    auth_cmd.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help=DATA_DIR_HELP)
    identity_cmd = sub.add_parser("identity", help="print the TLS certificate's fingerprint (sha256:...) "
                                                   "for tls_fingerprint in the client's config.toml")
    identity_cmd.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help=DATA_DIR_HELP)
    return parser


def authorize_key(pubkey_file: Path, data_dir: Path) -> str:
    """Append the key in ``pubkey_file`` to ``management-authorized-keys`` (0600, no duplicates).

    Returns the message to print. Raises ConfigError for an unreadable file, a line that is not a
    supported public key, or a keys file that cannot be written.
    """
    try:
        text = pubkey_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ConfigError(f"Cannot read public key file {pubkey_file}: {reason}.") from None
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if len(lines) != 1:
        raise ConfigError(f"{pubkey_file} must hold exactly one public key line (found {len(lines)}).")
    key = parse_public_key(lines[0])
    paths = ServerPaths(data_dir)
    target = paths.authorized_keys
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        current = target.read_text(encoding="utf-8") if target.exists() else ""
    except OSError as exc:
        raise ConfigError(f"Cannot read {target}: {exc.strerror}.") from None
    if any(k.fingerprint == key.fingerprint for k in parse_authorized_keys(current)):
        return f"Key {key.fingerprint} is already authorized in {target}."
    if current and not current.endswith("\n"):
        current += "\n"
    try:
        write_atomic(target, (current + key.line + "\n").encode("utf-8"), mode=0o600)
    except OSError as exc:
        raise ConfigError(f"Cannot write {target}: {exc.strerror}.") from None
    label = f" ({key.comment})" if key.comment else ""
    return f"Authorized {key.key_type} key {key.fingerprint}{label} in {target}."


def refuse_public_plain_http(host: str) -> None:
    """Raise ConfigError unless every address ``host`` stands for is private (plain HTTP is safe).

    Nothing is bound: the check resolves ``host`` only.
    """
    try:
        public = public_addresses(resolve(host))
    except ConfigError:
        raise ConfigError(f"Refusing to serve plain HTTP on '{host}': it does not resolve, so it cannot be "
                          "checked to be private. Start with --tls, or listen on a private address."
                          ) from None
    if public:
        raise ConfigError(
            f"Refusing to serve plain HTTP on {host}: {public[0]} is not a private address "
            f"({PRIVATE_RANGES}), and requests carry secrets. Start with --tls, or listen on a private "
            "address (127.0.0.1 behind an SSH tunnel, or a tailnet address).")


def serve(data_dir: Path, host: str, port: int, log_level: str = "info", *, tls: bool = False,
          require_target: bool = False, app_user: str = DEFAULT_APP_USER) -> int:
    """Run the server until SIGTERM/SIGINT. Returns 0 after a clean stop.

    With ``tls`` it serves HTTPS with the identity in ``<data_dir>/tls/`` (made on first start);
    without it ``host`` must be private. With ``require_target`` signed bodies must name this
    server as their ``target``. Run as root, apps run as uids of their own and ``app_user``'s
    group (the account is made when missing); otherwise as the server's user. Raises
    ConfigError, before binding anything, when plain HTTP is asked for on a public address, when
    ``app_user`` is root or cannot be made, and when the data dir cannot be prepared, its
    config.json is invalid, or the server identity (``identity.key``, made on first start as
    Tako's server makes it) or the TLS identity cannot be made.
    """
    if not tls:
        refuse_public_plain_http(host)
    import uvicorn

    from ..core.pipes import limit_heap_growth
    from .app import create_app
    from .auth import RequestAuth
    from .identity_key import ensure_server_identity
    from .notify import Notifier
    from .recovery import recover_interrupted_restores
    from .runtime import AppRuntime
    from .scheduler import Scheduler
    from .service import BackupService

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limit_heap_growth()  # a long-running streamer: keep peak RSS flat across backups
    paths = ServerPaths(data_dir)
    if os.geteuid() == 0:
        account = app_account(app_user)
        paths = paths.run_apps_as(account)
        log.info("apps run as uids of their own (see %s) with group %s (gid %d)",
                 paths.state_dir / "app-ids.json", account.name, account.gid)
    else:
        log.info("apps run as tako-server's own user (uid %d): it is not root, so --app-user is not used",
                 os.geteuid())
    paths.prepare()
    recover_interrupted_restores(paths)
    name = paths.server_name()
    identity = ensure_server_identity(paths.root)
    cert_file = key_file = None
    if tls:
        tls_identity = ensure_identity(paths.tls_dir, name, host)
        cert_file, key_file = str(tls_identity.cert_path), str(tls_identity.key_path)
        log.info("serving HTTPS; TLS certificate %s", tls_identity.fingerprint)
    runtime = AppRuntime(paths.logs_dir, users=paths.users)
    notifier = Notifier(run_as=None if paths.users is None else paths.users.identity)
    service = BackupService(paths, name, runtime=runtime, identity=identity, notifier=notifier)
    app = create_app(service, RequestAuth.from_file(paths.authorized_keys, paths.seen_nonces),
                     require_target=require_target)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="off",
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS, server_header=False,
                            ssl_certfile=cert_file, ssl_keyfile=key_file)
    server = uvicorn.Server(config)
    stopping = {"requested": False}

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping["requested"] = True
        server.should_exit = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    scheduler = Scheduler(service)
    log.info("tako-server %s: server %r, identity %s, data dir %s", __version__, name, identity, data_dir)
    listen_failed = False
    try:
        service.resume_apps()
        service.safety.start()  # resumes the uploads of kept trees not yet in the bucket
        scheduler.start()
        if not stopping["requested"]:
            server.run()
    except SystemExit as exc:  # uvicorn exits when it cannot bind
        listen_failed = exc.code not in (0, None)
    finally:
        log.info("stopping: scheduler, running backups and restores, notifications, then apps")
        scheduler.stop(timeout=0)
        service.safety.close()  # uploads of kept trees stop here and resume at the next start
        if not service.locks.close(timeout=GRACEFUL_SHUTDOWN_SECONDS):
            log.warning("a backup or restore is still running; stopping the apps anyway")
        notifier.close(timeout=NOTIFIER_CLOSE_SECONDS)
        runtime.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if listen_failed or (not server.started and not stopping["requested"]):
        raise ConfigError(f"Could not listen on {host}:{port} (see the log above); is another server "
                          "running there?")
    log.info("tako-server stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
