"""`python -m edge_node run|classify|check-config`: clear messages and non-zero exits, never tracebacks."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from contracts.confs import DEFAULT_PATH, Confs, ConfsError, EdgeNodeConfs, load_confs
from contracts.model_package import PackageError, parse_public_key, unpack_package
from edge_node.state_files import PRIVATE_UMASK

logger = logging.getLogger("edge_node")


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
    classify.add_argument("--runtime", choices=["openvino", "onnxruntime", "litert"], help="default: edge_node.runtime")
    classify.add_argument(
        "--precision", choices=["f32", "bf16", "f16", "auto"], help="default: edge_node.inference_precision"
    )
    classify.add_argument("--device", help="OpenVINO device (default: edge_node.openvino.device)")
    classify.add_argument("--json", action="store_true", help="one JSON object per image, then a summary object")
    classify.add_argument("--threshold", type=float, help="confidence threshold (default: from confs.json)")
    classify.add_argument(
        "--specimen", metavar="ID", help="opaque specimen id: the images are one specimen's fields; prints its verdict"
    )
    return parser


def _load(path: Path) -> Confs:
    try:
        return load_confs(path)
    except ConfsError as exc:
        raise CliError(f"invalid configuration: {exc}") from None


def check_config(confs_path: Path) -> list[str]:
    """Every problem with the confs and secrets, each naming its key; empty when all is well."""
    from edge_node.inference.registry import check_runtime
    from edge_node.node import Secrets, check_secrets

    try:
        confs = load_confs(confs_path)
    except ConfsError as exc:
        return [str(exc)]
    edge = confs.edge_node
    problems = check_secrets(confs, Secrets.from_confs(confs))
    problems += check_runtime(edge)
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
    # Whatever the node writes (outbox, models, journal, downloads) is for the node's user alone.
    os.umask(PRIVATE_UMASK)
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


def _classify_confs(args: argparse.Namespace, edge: EdgeNodeConfs) -> EdgeNodeConfs:
    """The node's settings with the command line's runtime, precision, device and threshold applied."""
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise CliError(f"--threshold must be between 0 and 1, not {args.threshold}")
    runtime = args.runtime or edge.runtime
    update: dict[str, object] = {"runtime": runtime}
    if args.precision:
        update["inference_precision"] = args.precision
    if args.threshold is not None:
        update["confidence_threshold"] = args.threshold
    if args.device:
        if runtime != "openvino":
            raise CliError(f"--device sets the OpenVINO device; {runtime} takes its settings from edge_node.{runtime}")
        update["openvino"] = edge.openvino.model_copy(update={"device": args.device})
    return edge.model_copy(update=update)


def cmd_classify(args: argparse.Namespace) -> int:
    from edge_node.classify_cli import classify_paths
    from edge_node.inference import ModelMismatchError, RuntimeUnavailable, load_classifier
    from edge_node.model_store import InstalledModel, ModelStore, ModelStoreError
    from edge_node.selftest import SelfTestError, selftest

    from contracts.specimens import is_specimen_id

    if args.specimen is not None and not is_specimen_id(args.specimen):
        raise CliError("--specimen must be an opaque id: letters, digits, '.', '_', '-', at most 64")
    confs = _load(args.confs)
    edge = _classify_confs(args, confs.edge_node)
    keys = [parse_public_key(k) for k in confs.ota.trusted_public_keys]
    with tempfile.TemporaryDirectory(prefix="edge-classify-") as tmp:
        try:
            package = args.package or (Path(edge.initial_package) if edge.initial_package else None)
            active = None if args.package else ModelStore(Path(edge.model_store), keys).active()
            if active is None and package is None:
                raise CliError("no model: give --package, or install one in edge_node.model_store")
            if active is None:
                assert package is not None
                model_dir = Path(tmp) / "package"
                active = InstalledModel(model_dir, unpack_package(package, model_dir, keys))
            classifier = load_classifier(active.path, active.manifest, edge)
        except (PackageError, ModelStoreError, ModelMismatchError, RuntimeUnavailable, OSError) as exc:
            raise CliError(f"cannot load the model: {exc}") from None
        try:
            selftest(classifier, active)
        except SelfTestError as exc:
            raise CliError(
                f"model {active.version} fails its self-test on {classifier.runtime} {classifier.device} "
                f"at {classifier.precision}: {exc}"
            ) from None
        summary = classify_paths(
            classifier, args.paths, edge.max_image_pixels, sys.stdout, sys.stderr, as_json=args.json,
            specimen_id=args.specimen, rule=confs.dashboard.specimens,
        )
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
