"""Picks the runtime module named by `edge_node.runtime`, importing it only when it is used."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from contracts.confs import EdgeNodeConfs
from contracts.model_package import Manifest
from edge_node.inference.base import Classifier, ModelMismatchError, RequestedPrecision, RuntimeName, RuntimeUnavailable

# runtime -> (module, the pip extra that installs what it imports)
BACKENDS: dict[str, tuple[str, str]] = {
    "openvino": ("edge_node.inference.openvino_runtime", "edge"),
    "onnxruntime": ("edge_node.inference.onnxruntime_runtime", "edge-onnx"),
    "litert": ("edge_node.inference.litert_runtime", "edge-litert"),
}


def backend(runtime: str) -> ModuleType:
    """The runtime's module, or RuntimeUnavailable naming the extra to install."""
    if runtime not in BACKENDS:
        raise RuntimeUnavailable(f"unknown runtime {runtime!r}; choose one of {sorted(BACKENDS)}")
    module, extra = BACKENDS[runtime]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RuntimeUnavailable(
            f"runtime {runtime} is not installed ({exc.msg}): pip install '.[{extra}]'"
        ) from None


def model_file(runtime: RuntimeName, manifest: Manifest) -> str | None:
    """The package file a runtime loads, or None when the package has none for it."""
    return {"openvino": manifest.model_xml, "onnxruntime": manifest.model_onnx, "litert": manifest.model_tflite}[runtime]


def load_classifier(
    package_dir: Path,
    manifest: Manifest,
    confs: EdgeNodeConfs,
    *,
    runtime: RuntimeName | None = None,
    precision: RequestedPrecision | None = None,
) -> Classifier:
    """Load a package's model on the configured (or given) runtime and precision."""
    runtime = runtime or confs.runtime
    if runtime in BACKENDS and model_file(runtime, manifest) is None:
        raise ModelMismatchError(f"runtime {runtime} has no model file in this package (format {manifest.format})")
    classifier: Classifier = backend(runtime).create(
        Path(package_dir), manifest, confs, precision or confs.inference_precision
    )
    return classifier


def check_runtime(confs: EdgeNodeConfs) -> list[str]:
    """Problems with the configured runtime (installed, devices, providers, precision), each naming its key."""
    try:
        module = backend(confs.runtime)
    except RuntimeUnavailable as exc:
        return [f"edge_node.runtime: {exc}"]
    problems: list[str] = module.check(confs)
    return problems
