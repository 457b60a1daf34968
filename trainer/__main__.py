"""Command line: python -m trainer index|augment|train|cv|evaluate|export|package|keys ..."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from trainer.errors import TrainerError

log = logging.getLogger("trainer")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__)
    parser.add_argument("--confs", type=Path, default=Path("confs.json"), help="configuration file (default confs.json)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("index", help="decode, deduplicate and split a dataset; report skipped files")
    p.add_argument("--data", type=Path, help="one folder per class (default: trainer.data_dir)")
    p.add_argument("--out", type=Path, help="write the index as JSON here")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = sub.add_parser("augment", help="write an augmented copy of a dataset")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--copies", type=int, default=1, help="augmented copies per image")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mask-scale-bar", action="store_true", help="also mask the scale-bar corner")

    p = sub.add_parser("train", help="train on the train split, assess on the test split")
    p.add_argument("--data", type=Path, help="override trainer.data_dir")
    p.add_argument("--epochs", type=int)
    p.add_argument("--model", choices=["small_cnn", "mobilenet_v2", "inception_v3"])
    p.add_argument("--image-size", type=int)
    p.add_argument("--internal-size", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--grayscale", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--max-minutes", type=float, help="override trainer.max_train_minutes")
    p.add_argument("--weights", type=Path, help="start from these weights (backbone weights for applications)")
    p.add_argument("--run-dir", type=Path, help="where to write the run (default runs/<model>-<time>)")
    p.add_argument("--quiet", action="store_true", help="one line per epoch instead of progress bars")

    p = sub.add_parser("export", help="convert a run's model to OpenVINO IR and check agreement")
    p.add_argument("--run", type=Path, default=Path("runs/latest"))
    p.add_argument("--int8", action="store_true", help="also try NNCF INT8 quantisation")

    p = sub.add_parser("package", help="export, assess through OpenVINO, and write the signed package")
    p.add_argument("--run", type=Path, default=Path("runs/latest"))
    p.add_argument("--name", default="all-small-cnn")
    p.add_argument("--version", default="1.0.0")
    p.add_argument("--out", type=Path, help="package folder (default trainer.package_dir)")
    p.add_argument("--int8", action="store_true", help="ship the INT8 IR when it keeps accuracy")

    p = sub.add_parser("evaluate", help="evaluate a package on a folder-per-class dataset through OpenVINO")
    p.add_argument("--package", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", choices=["all", "test"], default="all", help="test: only the release's held-out blocks (the test split; a final fit's validation blocks)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("cv", help="grouped k-fold cross-validation of the CNN beside the colour baseline")
    p.add_argument("--data", type=Path, help="override trainer.data_dir")
    p.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    p.add_argument("--max-minutes", type=float, help="training time budget per fold (default trainer.max_train_minutes)")
    p.add_argument("--epochs", type=int, help="most epochs per fold (default trainer.epochs)")
    p.add_argument("--seed", type=int, help="override trainer.seed (fold assignment, validation choice, training)")
    p.add_argument("--training-seed", type=int, help="seed of training only (weights, augmentation, batch order): the same "
                   "folds trained again measure how much a figure moves with the seed (default: the fold seed)")
    p.add_argument("--only-folds", help="comma-separated fold numbers to run, e.g. 0,1 (default all)")
    p.add_argument("--robustness-images", type=int, default=150, help="test images per fold measured under shifts")
    p.add_argument("--out", type=Path, help="results folder (default runs/cv-<time>); folds already in it are skipped")
    p.add_argument("--note", action="append", help="a line for the report on where or how the folds ran (repeatable; kept)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    p = sub.add_parser("keys", help="create the development signing key; --trust adds it to confs.json")
    p.add_argument("--trust", action="store_true", help="add the public key to ota.trusted_public_keys")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run one command; user errors print one line and exit 2."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from contracts.confs import ConfsError
    from contracts.model_package import PackageError
    from trainer import commands

    try:
        return getattr(commands, f"cmd_{args.command}")(args)
    except (TrainerError, ConfsError, PackageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
