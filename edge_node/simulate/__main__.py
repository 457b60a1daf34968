"""`python -m edge_node.simulate --nodes N --rate R ...`: run a fleet of virtual nodes and print its figures."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from contracts.confs import DEFAULT_PATH, ConfsError, load_confs
from contracts.model_package import PackageError, parse_public_key

logger = logging.getLogger("edge_node.simulate")


class CliError(Exception):
    """A problem reported as one line on stderr with exit code 1."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m edge_node.simulate", description="run N virtual edge nodes")
    parser.add_argument("--nodes", type=_positive_int, required=True, help="how many virtual nodes")
    parser.add_argument("--rate", type=_non_negative, default=0.2, help="results per node per second")
    parser.add_argument("--life-interval", type=_positive, default=1.0, help="seconds between Life messages")
    parser.add_argument("--duration", type=_positive, default=60.0, help="seconds to run")
    parser.add_argument("--confs", type=Path, default=DEFAULT_PATH, help="confs.json (broker, identity, ota keys)")
    parser.add_argument("--credentials", type=Path, required=True, help="JSON: device id -> broker password")
    parser.add_argument("--tokens", type=Path, help="JSON: device id -> package download token")
    parser.add_argument("--device-prefix", default="sim", help="device ids are PREFIX-0001, PREFIX-0002, ...")
    parser.add_argument("--initial-package", type=Path, help="package every node starts with (default: confs)")
    parser.add_argument("--work-dir", type=Path, help="where node state goes (default: a temporary folder)")
    parser.add_argument("--cheap", action="store_true", help="deterministic stand-in classifier for results")
    parser.add_argument("--uncertain-version", action="append", default=[], metavar="VERSION",
                        help="nodes serving this model version answer flat probabilities, every result uncertain "
                             "(a bad release, to exercise rollout health gates); repeatable")
    parser.add_argument("--workers", type=_positive_int, default=4, help="threads producing results and Life")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def read_secret_map(path: Path, what: str) -> dict[str, str]:
    """A JSON object of id -> secret, or CliError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"{what} file {path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise CliError(f"{what} file {path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise CliError(f"{what} file {path}: must be a JSON object of device id -> string")
    return data


def build_fleet(args: argparse.Namespace, work_dir: Path):  # noqa: ANN201 - Fleet is imported lazily
    """The Fleet described by the command line and confs.json."""
    from edge_node.simulate import Fleet, FleetError, FleetSettings

    try:
        confs = load_confs(args.confs)
    except ConfsError as exc:
        raise CliError(f"invalid configuration: {exc}") from None
    package = args.initial_package or (Path(confs.edge_node.initial_package) if confs.edge_node.initial_package else None)
    if package is None or not package.is_file():
        raise CliError(f"initial package {package} not found: give --initial-package or set edge_node.initial_package")
    if not confs.ota.trusted_public_keys:
        raise CliError("ota.trusted_public_keys is empty: every package would be refused")
    settings = FleetSettings(
        nodes=args.nodes, host=confs.mqtt.host, port=confs.mqtt.port, location=confs.identity.location,
        zone=confs.identity.zone, work_dir=work_dir,
        trusted_keys=[parse_public_key(k) for k in confs.ota.trusted_public_keys], initial_package=package,
        rate=args.rate, life_interval_s=args.life_interval, device_prefix=args.device_prefix,
        max_package_bytes=confs.ota.max_package_bytes, package_origin=confs.dashboard.public_url,
        cheap_classifier=args.cheap, uncertain_versions=tuple(args.uncertain_version),
        edge=confs.edge_node,
        tls=confs.mqtt.tls, ca_file=confs.mqtt.ca_file, keepalive=confs.mqtt.keepalive, workers=args.workers,
    )
    credentials = read_secret_map(args.credentials, "credentials")
    tokens = read_secret_map(args.tokens, "tokens") if args.tokens else None
    try:
        return Fleet(settings, credentials, tokens)
    except (FleetError, PackageError, ValueError) as exc:
        raise CliError(str(exc)) from None


def summarise(fleet, running: list, duration: float) -> dict[str, float | int]:  # noqa: ANN001
    """Totals over every node (connections as they were while running), printed as the last line."""
    stats = fleet.stats()
    return {
        "nodes": len(stats),
        "connected": sum(s.connected for s in running),
        "duration_s": duration,
        "results_stored": sum(s.results_stored for s in stats),
        "results_acked": sum(s.results_acked for s in stats),
        "results_skipped": sum(s.results_skipped for s in stats),
        "life_sent": sum(s.life_sent for s in stats),
        "outbox_depth": sum(s.outbox_depth for s in stats),
        "late_ticks": fleet.late_ticks,
        "compiled_models": len(fleet.classifiers),
    }


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="edge-fleet-") as tmp:
        fleet = build_fleet(args, args.work_dir or Path(tmp))
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: (stop.set(), fleet.request_stop()))
        print(f"starting {args.nodes} virtual nodes", flush=True)
        running = fleet.run(args.duration)
        summary = summarise(fleet, running, args.duration)
    for stat in fleet.stats()[:10]:
        print(f"{stat.device_id}: {stat.results_stored} stored, {stat.results_acked} acked, model {stat.model_version}")
    print(json.dumps(summary), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    threading.stack_size(512 * 1024)  # hundreds of paho and outbox threads
    try:
        return run(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
