"""`python -m edge_node run|classify|check-config`: clear messages and non-zero exits, never tracebacks."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from contracts.confs import DEFAULT_PATH, Confs, ConfsError, load_confs
from contracts.model_package import PackageError, parse_public_key, unpack_package

logger = logging.getLogger("edge_node")

KNOWN_DEVICES = ("CPU", "GPU", "NPU", "AUTO")


class CliError(Exception):
    """A problem reported as one line on stderr with exit code 1."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m edge_node", description="ALL edge classification node")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "run the node"), ("check-config", "validate confs.json and the node's secrets")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--confs", type=Path, default=DEFAULT_PATH, help="path of confs.json")
        cmd.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    classify = sub.add_parser("classify", help="classify image files or folders and print the results")
    classify.add_argument("paths", nargs="+", type=Path, metavar="FILE|DIR")
    classify.add_argument("--confs", type=Path, default=DEFAULT_PATH, help="path of confs.json")
    classify.add_argument("--package", type=Path, help="signed model package (default: the node's active model)")
    classify.add_argument("--device", help="OpenVINO device (default: edge_node.openvino_device)")
    classify.add_argument("--threshold", type=float, help="confidence threshold (default: from confs.json)")
    return parser


def _load(path: Path) -> Confs:
    try:
        return load_confs(path)
    except ConfsError as exc:
        raise CliError(f"invalid configuration: {exc}") from None


def check_config(confs_path: Path) -> list[str]:
    """Every problem with the confs and secrets, each naming its key; empty when all is well."""
    from edge_node.node import Secrets, check_secrets

    try:
        confs = load_confs(confs_path)
    except ConfsError as exc:
        return [str(exc)]
    edge = confs.edge_node
    problems = check_secrets(confs, Secrets.from_confs(confs))
    if edge.openvino_device.split(":")[0] not in KNOWN_DEVICES and not edge.openvino_device.startswith(("HETERO", "MULTI")):
        hint = " (MYRIAD needs OpenVINO 2022.3 LTS)" if edge.openvino_device.upper() == "MYRIAD" else ""
        problems.append(f"edge_node.openvino_device: {edge.openvino_device!r} is not one of {KNOWN_DEVICES}{hint}")
    if edge.initial_package and not Path(edge.initial_package).is_file():
        problems.append(f"edge_node.initial_package: {edge.initial_package} does not exist")
    if confs.mqtt.ca_file and not Path(confs.mqtt.ca_file).is_file():
        problems.append(f"mqtt.ca_file: {confs.mqtt.ca_file} does not exist")
    if edge.inputs.camera is None and edge.inputs.watch_dir is None and not edge.inputs.http:
        problems.append("edge_node.inputs: every input is disabled")
    return problems


def cmd_check_config(confs_path: Path) -> int:
    problems = check_config(confs_path)
    if problems:
        print("configuration problems:\n" + "\n".join(problems), file=sys.stderr)
        return 1
    print(f"{confs_path}: OK")
    return 0


def cmd_run(confs_path: Path) -> int:
    from edge_node.model_store import ModelStoreError
    from edge_node.node import EdgeNode, NodeSetupError, Secrets

    confs = _load(confs_path)
    try:
        node = EdgeNode(confs, Secrets.from_confs(confs))
    except (NodeSetupError, PackageError, ModelStoreError, OSError) as exc:
        raise CliError(f"cannot start: {exc}") from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        node.start()
        stop.wait()
        logger.info("stopping on signal")
    finally:
        node.shutdown()
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    from edge_node.classify_cli import classify_paths
    from edge_node.inference import ModelMismatchError, OpenVinoClassifier
    from edge_node.model_store import ModelStore, ModelStoreError

    confs = _load(args.confs)
    edge = confs.edge_node
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise CliError(f"--threshold must be between 0 and 1, not {args.threshold}")
    keys = [parse_public_key(k) for k in confs.ota.trusted_public_keys]
    device = args.device or edge.openvino_device
    threshold = edge.confidence_threshold if args.threshold is None else args.threshold
    with tempfile.TemporaryDirectory(prefix="edge-classify-") as tmp:
        try:
            package = args.package or (Path(edge.initial_package) if edge.initial_package else None)
            active = None if args.package else ModelStore(Path(edge.model_store), keys).active()
            if active is not None:
                model_dir, manifest = active.path, active.manifest
            elif package is not None:
                model_dir = Path(tmp) / "package"
                manifest = unpack_package(package, model_dir, keys)
            else:
                raise CliError("no model: give --package, or install one in edge_node.model_store")
            classifier = OpenVinoClassifier(model_dir, manifest, device, threshold)
        except (PackageError, ModelStoreError, ModelMismatchError, OSError) as exc:
            raise CliError(f"cannot load the model: {exc}") from None
        summary = classify_paths(classifier, args.paths, edge.max_image_pixels, sys.stdout, sys.stderr)
    if summary.count == 0:
        raise CliError("no image was classified")
    return 1 if summary.refused else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "WARNING"), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "check-config":
            return cmd_check_config(args.confs)
        if args.command == "run":
            return cmd_run(args.confs)
        return cmd_classify(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
