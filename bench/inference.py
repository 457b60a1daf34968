"""Inference speed of the released model: Keras vs OpenVINO (LATENCY, THROUGHPUT) vs LiteRT, batch 1.

Usage: python bench/inference.py [--package models/all-small-cnn-1.0.0.tar.gz] [--run runs/latest]
The package holds only the OpenVINO IR. Keras and LiteRT time the same architecture, with the run's
trained weights when --run is given and random weights otherwise (speed does not depend on weights).
Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("bench.inference")


def _times(fn: Callable[[], object], n: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def _keras_model(manifest, run: Path | None):  # type: ignore[no-untyped-def]
    import keras

    import trainer.layers  # noqa: F401
    from trainer.model import ModelSpec, build_model

    if run is not None and (run / "model.keras").is_file():
        return keras.models.load_model(run / "model.keras"), "trained weights from " + str(run)
    arch = manifest.preprocessing.get("architecture", {})
    spec = ModelSpec(
        name=arch.get("model", "small_cnn"), n_classes=len(manifest.classes), image_size=manifest.input.shape[1],
        internal_size=int(manifest.preprocessing.get("internal_size", 112)), width=int(arch.get("width", 16)),
        grayscale=bool(manifest.preprocessing.get("grayscale", False)),
        mask_scale_bar=bool(manifest.preprocessing.get("scale_bar_mask", True)),
    )
    return build_model(spec), "same architecture with random weights (timing does not depend on weights)"


def _litert(model, image: np.ndarray) -> tuple[list[float], str]:  # type: ignore[no-untyped-def]
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    flat = converter.convert()
    try:
        from ai_edge_litert.interpreter import Interpreter

        runtime = "ai-edge-litert"
    except ImportError:
        Interpreter = tf.lite.Interpreter
        runtime = "tf.lite.Interpreter"
    interpreter = Interpreter(model_content=flat, num_threads=2)
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], [1, *image.shape])
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    x = image[None].astype(np.float32)

    def run() -> None:
        interpreter.set_tensor(inp, x)
        interpreter.invoke()
        interpreter.get_tensor(out)

    return _times(run, 200), runtime


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, help="model package (default: newest in models/)")
    parser.add_argument("--run", type=Path, help="training run with model.keras for trained Keras weights")
    parser.add_argument("--confs", type=Path, default=Path("confs.json"))
    parser.add_argument("--iterations", type=int, default=300)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import openvino as ov

    from contracts.confs import load_confs
    from contracts.model_package import parse_public_key, unpack_package
    from trainer.ov_classifier import OpenVinoClassifier

    package = args.package or max(Path("models").glob("*.tar.gz"), key=lambda p: p.stat().st_mtime, default=None)
    if package is None or not package.is_file():
        print("error: no model package found (pass --package)", file=sys.stderr)
        return 2
    keys = [parse_public_key(k) for k in load_confs(args.confs).ota.trusted_public_keys]
    with tempfile.TemporaryDirectory() as tmp:
        manifest = unpack_package(package, Path(tmp) / "pkg", keys)
        xml = Path(tmp) / "pkg" / manifest.model_xml
        size = manifest.input.shape[1]
        images = np.random.default_rng(0).integers(0, 256, (64, size, size, 3)).astype(np.uint8)
        image = images[0]

        latency = OpenVinoClassifier(xml, hint="LATENCY")
        ov_ms = _times(lambda: latency.predict_one(image), args.iterations, warmup=20)
        throughput = OpenVinoClassifier(xml, hint="THROUGHPUT")
        throughput.predict(images)
        batch = np.concatenate([images] * 8)
        start = time.perf_counter()
        throughput.predict(batch, parallel=True)
        images_per_s = len(batch) / (time.perf_counter() - start)
        nireq = throughput.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")

    model, weights_note = _keras_model(manifest, args.run)
    x = image[None].astype(np.float32)
    keras_ms = _times(lambda: model(x, training=False), max(args.iterations // 3, 30))
    try:
        litert_ms, runtime = _litert(model, image)
    except Exception as exc:  # noqa: BLE001  (conversion support varies between TensorFlow builds)
        litert_ms, runtime = [float("nan")], f"unavailable ({exc.__class__.__name__}: {exc})"

    result = {
        "package": str(package),
        "keras_ms_p50": round(statistics.median(keras_ms), 3),
        "openvino_ms_p50": round(statistics.median(ov_ms), 3),
        "openvino_ms_p99": round(_p(ov_ms, 99), 3),
        "litert_ms_p50": round(statistics.median(litert_ms), 3),
        "speedup_vs_keras": round(statistics.median(keras_ms) / statistics.median(ov_ms), 2),
        "openvino_images_per_s": round(images_per_s, 1),
    }
    print(f"model {manifest.name} {manifest.version}, input {manifest.input.shape} {manifest.input.dtype}; OpenVINO {ov.__version__}")
    print(f"Keras and LiteRT use: {weights_note}")
    print(f"Keras model(x), batch 1:            p50 {result['keras_ms_p50']:.2f} ms  p99 {_p(keras_ms, 99):.2f} ms")
    print(f"OpenVINO LATENCY, batch 1:          p50 {result['openvino_ms_p50']:.2f} ms  p99 {result['openvino_ms_p99']:.2f} ms")
    print(f"LiteRT ({runtime}), batch 1:  p50 {result['litert_ms_p50']:.2f} ms")
    print(f"OpenVINO THROUGHPUT, AsyncInferQueue ({nireq} requests): {result['openvino_images_per_s']:.0f} images/s")
    print(f"OpenVINO is {result['speedup_vs_keras']:.1f}x faster than Keras model(x)")
    print(json.dumps({k: v for k, v in result.items() if k != "package"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
