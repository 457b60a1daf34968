"""Inference speed of the released model on every runtime and precision this machine has, batch 1.

Usage: python bench/inference.py [--package models/all-small-cnn-X.tar.gz] [--iterations 1000] [--rounds 20]
                                 [--run runs/DIR] [--confs confs.json] [--only onnxruntime_f32,...]
Each runtime is loaded the way a node loads it (edge_node.inference.load_classifier) and timed on `infer_raw` of one
preprocessed image (the same work outside the model for every runtime), each in its own process (no other runtime's
thread pool spinning beside it) kept for the whole run and timed in short turns over many rounds in alternating
order, so a change in load falls on all alike. A runtime's p50 is the median of its per-round p50s; p99 is over all
samples. `default_ms_p50` is the default runtime at the default precision
(confs.json); `default_wins_rounds` counts the rounds where it was no slower than LiteRT, and the load average
before and after is recorded. With --run, Keras `model(x)` is timed too. --only times the named runtime_precision
keys alone; on a GPU node, a confs file whose edge_node.onnxruntime.providers puts CUDAExecutionProvider first times
ONNX Runtime on the GPU (`device` in the figures says where it ran). A machine without OpenVINO times what it has.
Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("bench.inference")
COMBINATIONS = (("openvino", "f32"), ("openvino", "bf16"), ("openvino", "f16"), ("onnxruntime", "f32"), ("litert", "f32"))


def _times(fn: Callable[[], object], n: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def _newest_package() -> Path | None:
    from contracts.model_package import version_key

    packages = list(Path("models").glob("*-[0-9]*.[0-9]*.[0-9]*.tar.gz"))
    return max(packages, key=lambda p: version_key(p.name[: -len(".tar.gz")].rsplit("-", 1)[1]), default=None)


def _native_precisions() -> set[str]:
    try:
        import openvino as ov
    except ImportError:  # a GPU or ARM node may carry ONNX Runtime or LiteRT alone
        return {"f32"}
    capabilities = set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    return {"f32"} | {p for p, cap in (("bf16", "BF16"), ("f16", "FP16")) if cap in capabilities}


def _load(pkg: Path, manifest, confs, runtime: str, precision: str):  # type: ignore[no-untyped-def]
    from edge_node.inference import load_classifier

    try:
        return load_classifier(pkg, manifest, confs, runtime=runtime, precision=precision)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001  (a runtime or precision this machine lacks is reported, not fatal)
        return f"{exc.__class__.__name__}: {exc}"


def _worker(pkg: Path, confs_path: Path, runtime: str, precision: str) -> int:
    """One runtime in its own process, kept for the whole run: for each count read from stdin, print its samples."""
    from contracts.confs import load_confs
    from contracts.model_package import Manifest

    manifest = Manifest.model_validate_json((pkg / "manifest.json").read_bytes())
    classifier = _load(pkg, manifest, load_confs(confs_path).edge_node, runtime, precision)
    if isinstance(classifier, str):
        print(json.dumps({"error": classifier}), flush=True)
        return 0
    tensor = classifier.preprocess(np.random.default_rng(0).integers(0, 256, (224, 224, 3)).astype(np.uint8))
    _times(lambda: classifier.infer_raw(tensor), 0, warmup=30)
    print(json.dumps({"precision": classifier.precision, "device": classifier.device}), flush=True)
    for line in sys.stdin:
        # A few untimed calls first: the block before belonged to another process, whose data filled the caches.
        print(json.dumps({"ms": _times(lambda: classifier.infer_raw(tensor), int(line), warmup=5)}), flush=True)
    return 0


def _reply(worker: subprocess.Popen[str], key: str) -> dict:  # type: ignore[type-arg]
    """The worker's next JSON line (anything else a library prints is skipped)."""
    for line in worker.stdout:  # type: ignore[union-attr]
        if line.startswith("{"):
            return json.loads(line)  # type: ignore[no-any-return]
    raise RuntimeError(f"the {key} worker ended without an answer (exit {worker.wait()})")


def _time_in_turns(pkg: Path, confs_path: Path, wanted: list[tuple[str, str]], n: int, rounds: int) -> dict:  # type: ignore[type-arg]
    """Each runtime in its own idle-waiting process, timed in short turns (order reversed every other round)."""
    results: dict[str, dict | str] = {}
    workers: dict[str, subprocess.Popen[str]] = {}
    for runtime, precision in wanted:
        cmd = [sys.executable, __file__, "--worker", str(pkg), runtime, precision, "--confs", str(confs_path)]
        worker = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        key = f"{runtime}_{precision}"
        ready = _reply(worker, key)
        if "error" in ready:
            results[key] = ready["error"]
            worker.communicate()
            continue
        results[key] = {"precision": ready["precision"], "device": ready["device"], "samples": [], "rounds": []}
        workers[key] = worker
    per_turn = str(max(n // rounds, 20))
    try:
        for number in range(rounds):
            for key in list(workers) if number % 2 == 0 else list(workers)[::-1]:
                workers[key].stdin.write(per_turn + "\n")  # type: ignore[union-attr]
                workers[key].stdin.flush()  # type: ignore[union-attr]
                ms = _reply(workers[key], key)["ms"]
                results[key]["samples"] += ms  # type: ignore[index]
                results[key]["rounds"].append(statistics.median(ms))  # type: ignore[index]
    finally:
        for worker in workers.values():
            worker.communicate()
    for key in workers:
        timing = results[key]
        ms = timing.pop("samples")  # type: ignore[union-attr]
        timing.update(p50=statistics.median(timing["rounds"]), p99=float(np.percentile(ms, 99)))  # type: ignore[union-attr,index]
    return results


def _keys(text: str) -> set[str]:
    """--only's runtime_precision keys, each one the benchmark knows."""
    keys = {k.strip() for k in text.split(",") if k.strip()}
    known = {f"{r}_{p}" for r, p in COMBINATIONS}
    if not keys or not keys <= known:
        raise argparse.ArgumentTypeError(f"expected keys among {', '.join(sorted(known))}, not {text!r}")
    return keys


def _wins(default: dict | str | None, litert: dict | str | None) -> str | None:  # type: ignore[type-arg]
    """'k/n': in how many rounds the default runtime's p50 was no slower than LiteRT's."""
    if not isinstance(default, dict) or not isinstance(litert, dict):
        return None
    pairs = list(zip(default["rounds"], litert["rounds"]))
    return f"{sum(ov <= lt for ov, lt in pairs)}/{len(pairs)}"


def _keras_ms(run: Path, image: np.ndarray, n: int) -> float | None:
    if not (run / "model.keras").is_file():
        return None
    import keras

    import trainer.layers  # noqa: F401

    model = keras.models.load_model(run / "model.keras")
    x = image[None].astype(np.float32)
    return statistics.median(_times(lambda: model(x, training=False), max(n // 3, 30), warmup=5))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, help="model package (default: the highest version in models/)")
    parser.add_argument("--run", type=Path, help="training run with model.keras, to time Keras too")
    parser.add_argument("--confs", type=Path, default=Path("confs.json"))
    parser.add_argument("--iterations", type=int, default=1000, help="samples per runtime, split over the rounds")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--only", type=_keys, help="comma-separated runtime_precision keys to time, e.g. onnxruntime_f32")
    parser.add_argument("--worker", nargs=3, metavar=("PKG_DIR", "RUNTIME", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.worker:
        return _worker(Path(args.worker[0]), args.confs, args.worker[1], args.worker[2])
    from contracts.confs import load_confs
    from contracts.model_package import parse_public_key, unpack_package

    package = args.package or _newest_package()
    if package is None or not package.is_file():
        print("error: no model package found (pass --package)", file=sys.stderr)
        return 2
    confs = load_confs(args.confs)
    keys = [parse_public_key(k) for k in confs.ota.trusted_public_keys]
    native = _native_precisions()
    image = np.random.default_rng(0).integers(0, 256, (224, 224, 3)).astype(np.uint8)
    timings: dict[str, dict | str] = {}
    default = f"{confs.edge_node.runtime}_{confs.edge_node.inference_precision}"
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        pkg = Path(tmp) / "pkg"
        manifest = unpack_package(package, pkg, keys)
        wanted = [(r, p) for r, p in COMBINATIONS if p in native]
        if default not in {f"{r}_{p}" for r, p in wanted}:
            wanted.append((confs.edge_node.runtime, confs.edge_node.inference_precision))
        if args.only:
            wanted = [(r, p) for r, p in wanted if f"{r}_{p}" in args.only]
            default = default if default in args.only else f"{wanted[0][0]}_{wanted[0][1]}" if wanted else default
        timings.update({f"{r}_{p}": f"this CPU has no native {p}" for r, p in COMBINATIONS if p not in native})
        timings.update(_time_in_turns(pkg, args.confs.resolve(), wanted, args.iterations, max(args.rounds, 1)))

    def p50(key: str) -> float | None:
        value = timings.get(key)
        return round(value["p50"], 3) if isinstance(value, dict) else None

    default_timing = timings.get(default, "not timed")
    result = {
        "package": f"{manifest.name}-{manifest.version}",
        "default": default,
        "default_ms_p50": p50(default),
        "default_ms_p99": round(default_timing["p99"], 3) if isinstance(default_timing, dict) else None,
        "default_images_per_s": round(1000 / default_timing["p50"], 1) if isinstance(default_timing, dict) else None,
        "openvino_f32_ms_p50": p50("openvino_f32"),
        "openvino_bf16_ms_p50": p50("openvino_bf16"),
        "openvino_f16_ms_p50": p50("openvino_f16"),
        "onnxruntime_ms_p50": p50("onnxruntime_f32"),
        "litert_ms_p50": p50("litert_f32"),
        "devices": {key: value["device"] for key, value in timings.items() if isinstance(value, dict)},
        "default_wins_rounds": _wins(timings.get(default), timings.get("litert_f32")),
        "rounds": max(args.rounds, 1),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    if args.run is not None:
        keras_ms = _keras_ms(args.run, image, args.iterations)
        result["keras_ms_p50"] = round(keras_ms, 3) if keras_ms else None
    for key, value in timings.items():
        if isinstance(value, dict):
            print(f"{key:18s} p50 {value['p50']:.2f} ms  p99 {value['p99']:.2f} ms  {1000 / value['p50']:.0f} images/s "
                  f"(precision in effect: {value['precision']}, on {value['device']})")
        else:
            print(f"{key:18s} unavailable: {value}")
    litert = result["litert_ms_p50"]
    if result["default_ms_p50"] and litert:
        verdict = "no slower than" if result["default_ms_p50"] <= litert else "SLOWER than"
        print(f"default ({default}) is {verdict} LiteRT: {result['default_ms_p50']:.2f} vs {litert:.2f} ms")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
