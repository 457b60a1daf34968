"""Command line: render the config, add accounts and bridges, make TLS material, reload the broker."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from broker_config.bridge import BridgeLink, add_bridge, write_bridge
from broker_config.dashboards import DEFAULT_INGEST_WORKERS, add_dashboard
from broker_config.manage import (
    DEFAULT_OUT,
    BrokerSettings,
    GeneratedPaths,
    add_device,
    reload_broker,
    render,
)
from broker_config.registry import InvalidName, check_name
from broker_config.tls import DEFAULT_HOSTS, ensure_tls

logger = logging.getLogger(__name__)


def _name_type(what: str) -> Callable[[str], str]:
    """An argparse type that accepts only `[A-Za-z0-9_.-]{1,64}`."""

    def parse(value: str) -> str:
        try:
            return check_name(value, what)
        except InvalidName as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _port(value: str) -> int:
    """An argparse type for a TCP port."""
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {value!r}: not a number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {port}: must be 1-65535")
    return port


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per task."""
    parser = argparse.ArgumentParser(prog="python -m broker_config", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_out(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"generated directory (default {DEFAULT_OUT})")
        return p

    r = with_out(sub.add_parser("render", help="write mosquitto.conf, passwd, acl and TLS material"))
    r.add_argument("--plain-port", type=_port, default=1883)
    r.add_argument("--tls-port", type=_port, default=8883)
    r.add_argument("--plain-bind", default="127.0.0.1", help="address of the plain listener (default localhost only)")
    r.add_argument("--tls-bind", default="", help="address of the TLS listener (default all interfaces)")
    r.add_argument("--user", default="mosquitto", help="user the broker drops privileges to")
    r.add_argument("--log-dest", default="stderr", help="Mosquitto log_dest value, e.g. 'stderr' or 'file /path'")
    r.add_argument("--host", action="append", help="certificate host name or IP (repeat); default localhost, 127.0.0.1")
    r.add_argument(
        "--path-prefix", help="directory the broker sees --out as (e.g. /mosquitto/config in a container); default --out"
    )

    d = with_out(sub.add_parser("add-device", help="register a device and print its password once"))
    d.add_argument("device_id", type=_name_type("device id"))
    d.add_argument("--location", required=True, type=_name_type("location"))
    d.add_argument("--zone", required=True, type=_name_type("zone"))
    d.add_argument("--replace", action="store_true", help="re-register an existing device with a new password")
    d.add_argument("--reload", action="store_true", help="SIGHUP the running broker afterwards")

    b = with_out(sub.add_parser("add-dashboard", help="register the dashboard account and print its password once"))
    b.add_argument("--username", type=_name_type("dashboard username"), default="dashboard")
    b.add_argument("--app", type=_name_type("application id"), help="application id (default: the username)")
    b.add_argument(
        "--location", action="append", type=_name_type("location"), default=[], help="extra location (repeat)"
    )
    b.add_argument("--ingest-workers", type=int, default=DEFAULT_INGEST_WORKERS, metavar="N",
                   help=f"accounts for N ingest workers side by side: USER, USER.ingest-2 ... (default {DEFAULT_INGEST_WORKERS})")
    b.add_argument("--reload", action="store_true", help="SIGHUP the running broker afterwards")

    a = with_out(sub.add_parser("add-bridge", help="on the central broker: a building's bridge account, password once"))
    a.add_argument("username", type=_name_type("bridge username"))
    a.add_argument("--location", required=True, type=_name_type("location"))
    a.add_argument("--zone", required=True, action="append", type=_name_type("zone"), help="zone it carries (repeat)")
    a.add_argument("--reload", action="store_true", help="SIGHUP the running broker afterwards")

    g = with_out(sub.add_parser("bridge", help="on a building broker: bridge its zones to the central broker over TLS"))
    g.add_argument("--name", type=_name_type("bridge name"), default="central", help="connection name (default central)")
    g.add_argument("--central", required=True, metavar="HOST:PORT", help="the central broker's TLS listener")
    g.add_argument("--central-ca", required=True, type=Path, help="CA certificate of the central broker")
    g.add_argument("--location", required=True, type=_name_type("location"))
    g.add_argument("--zone", required=True, action="append", type=_name_type("zone"), help="zone it carries (repeat)")
    g.add_argument("--username", required=True, type=_name_type("bridge username"), help="its account on the central")
    g.add_argument("--password-file", type=Path, help="file with that account's password; BRIDGE_PASSWORD overrides")
    g.add_argument("--reload", action="store_true", help="SIGHUP the running broker afterwards")

    t = with_out(sub.add_parser("tls", help="create the CA and server certificate"))
    t.add_argument("--host", action="append", help="certificate host name or IP (repeat)")
    t.add_argument("--force", action="store_true", help="replace existing TLS material")

    with_out(sub.add_parser("reload", help="SIGHUP the running broker (pid file in the generated directory)"))
    return parser


def _run(args: argparse.Namespace) -> None:
    """Carry out one parsed command."""
    paths = GeneratedPaths(args.out)
    if args.command == "render":
        settings = BrokerSettings(
            plain_bind=args.plain_bind,
            tls_bind=args.tls_bind,
            run_as=args.user,
            log_dest=args.log_dest,
            hosts=tuple(args.host or DEFAULT_HOSTS),
        )
        render(args.out, args.plain_port, args.tls_port, settings, args.path_prefix)
        print(f"rendered {paths.conf}")
    elif args.command == "add-device":
        password = add_device(args.out, args.device_id, args.location, args.zone, replace=args.replace)
        print(f"device {args.device_id} password: {password}\n(saved in {paths.credentials}, mode 600)")
    elif args.command == "add-dashboard":
        password = add_dashboard(args.out, args.username, args.app, tuple(args.location),
                                 ingest_workers=args.ingest_workers)
        print(f"dashboard {args.username} password: {password} (also for its {args.ingest_workers - 1} ingest worker "
              f"accounts)\n(saved in {paths.credentials}, mode 600)")
    elif args.command == "add-bridge":
        password = add_bridge(args.out, args.username, args.location, tuple(args.zone))
        print(f"bridge {args.username} password: {password}\n(saved in {paths.credentials}, mode 600)")
    elif args.command == "bridge":
        link = BridgeLink(args.name, args.central, args.location, tuple(args.zone), args.username,
                          _bridge_password(args.password_file), args.central_ca)
        print(f"bridge {args.name} to {args.central} written to {write_bridge(args.out, link)}")
    elif args.command == "tls":
        tls = ensure_tls(paths.tls.ca_cert.parent, tuple(args.host or DEFAULT_HOSTS), force=args.force)
        print(f"CA {tls.ca_cert}, server certificate {tls.server_cert}")
    if getattr(args, "reload", False) or args.command == "reload":
        print(f"reloaded broker pid {reload_broker(paths.pid_file)}")


def _bridge_password(path: Path | None) -> str:
    """The bridge account's password from BRIDGE_PASSWORD or the named file."""
    password = os.environ.get("BRIDGE_PASSWORD") or (path.read_text().strip() if path is not None else "")
    if not password:
        raise ValueError("no bridge password: set BRIDGE_PASSWORD or --password-file")
    return password


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run; errors become one line on stderr and a non-zero exit."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        _run(args)
    except (InvalidName, ValueError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
