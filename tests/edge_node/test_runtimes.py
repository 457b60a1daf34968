"""Every runtime (OpenVINO, ONNX Runtime, LiteRT) loads a format-2 package, agrees with the others, applies
precision and the OOD threshold, and passes or fails the shared self-test; missing runtimes are reported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import openvino as ov
import pytest

from contracts.confs import EdgeNodeConfs
from contracts.model_package import unpack_package
from edge_node.inference import (
    OOD_VERDICT,
    Classifier,
    ModelMismatchError,
    RuntimeUnavailable,
    UnsupportedPrecision,
    load_classifier,
)
from edge_node.inference.registry import check_runtime
from edge_node.model_store import InstalledModel
from edge_node.selftest import SelfTestError, selftest
from edge_node.simulate.shared import CheapClassifier
from support.tiny_package import CLASSES, OOD_SELFTEST_COLOUR, class_image, make_tiny_package

ROOT = Path(__file__).resolve().parents[2]
RUNTIMES = ("openvino", "onnxruntime", "litert")
pytestmark = pytest.mark.timeout(120)


def confs(tmp_path: Path, **changes: object) -> EdgeNodeConfs:
    return EdgeNodeConfs(model_store=str(tmp_path / "models"), **changes)  # type: ignore[arg-type]


def installed(package) -> InstalledModel:
    return InstalledModel(package.unpacked, package.manifest)


def load(package, tmp_path: Path, runtime: str, precision: str = "f32") -> Classifier:
    if runtime == "litert" and package.manifest.model_tflite is None:
        pytest.skip("TensorFlow is not installed, so the test package has no .tflite")
    return load_classifier(package.unpacked, package.manifest, confs(tmp_path), runtime=runtime, precision=precision)


def dark_blue(size: int = 96) -> np.ndarray:
    return np.full((size, size, 3), OOD_SELFTEST_COLOUR, dtype=np.uint8)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_each_runtime_classifies_the_package_and_flags_out_of_distribution_inputs(tiny_package_v2, tmp_path, runtime):
    classifier = load(tiny_package_v2, tmp_path, runtime)
    assert isinstance(classifier, Classifier)
    assert (classifier.runtime, classifier.precision, classifier.model_version) == (runtime, "f32", "2.0.0")
    for label in CLASSES:
        prediction = classifier.classify(class_image(label, size=150, seed=11))
        assert prediction.label == label and not prediction.out_of_distribution
        assert prediction.ood_score is not None and prediction.ood_score < tiny_package_v2.manifest.ood.threshold
        assert prediction.verdict == label
    far = classifier.classify(dark_blue())
    assert far.out_of_distribution and far.ood_score > 0.1 and far.verdict == OOD_VERDICT


def test_the_runtimes_agree_with_each_other(tiny_package_v2, tmp_path):
    batch = np.stack([class_image(label, seed=5) for label in CLASSES] + [dark_blue(224)])
    results = {}
    for runtime in RUNTIMES:
        if runtime == "litert" and tiny_package_v2.manifest.model_tflite is None:
            continue
        results[runtime] = load(tiny_package_v2, tmp_path, runtime).infer_raw(batch)
    reference = results.pop("openvino")
    assert results, "no second runtime to compare with"
    for runtime, raw in results.items():
        np.testing.assert_allclose(raw.probabilities, reference.probabilities, atol=1e-4, err_msg=runtime)
        np.testing.assert_allclose(raw.ood_scores, reference.ood_scores, rtol=1e-3, atol=1e-6, err_msg=runtime)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_selftest_passes_at_f32_on_every_runtime(tiny_package_v2, tmp_path, runtime):
    result = selftest(load(tiny_package_v2, tmp_path, runtime), installed(tiny_package_v2))
    assert result.precision == "f32" and result.max_abs_diff <= result.tolerance
    assert result.ood_max_rel_diff is not None and result.n_samples == len(CLASSES) + 1


def test_the_selftest_passes_at_bf16_on_openvino_where_the_cpu_has_it(tiny_package_v2, tmp_path):
    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no BF16 (OPTIMIZATION_CAPABILITIES lacks it)")
    classifier = load(tiny_package_v2, tmp_path, "openvino", "bf16")
    assert classifier.precision == "bf16"
    result = selftest(classifier, installed(tiny_package_v2))
    assert result.precision == "bf16" and result.tolerance == tiny_package_v2.manifest.selftest.tolerance("bf16")


def test_auto_precision_reports_what_the_device_really_runs(tiny_package_v2, tmp_path):
    classifier = load(tiny_package_v2, tmp_path, "openvino", "auto")
    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert classifier.precision == ("bf16" if "BF16" in capabilities else "f32")
    selftest(classifier, installed(tiny_package_v2))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_selftest_fails_on_a_broken_package(tiny_package_v2, tmp_path, runtime):
    if runtime == "litert" and tiny_package_v2.manifest.model_tflite is None:
        pytest.skip("TensorFlow is not installed, so the test package has no .tflite")
    archive = make_tiny_package(
        tmp_path / "dist", tiny_package_v2.private_key, "2.0.1", fmt=2, break_selftest=True,
        tflite=runtime == "litert",
    )
    manifest = unpack_package(archive, tmp_path / "broken", [tiny_package_v2.private_key.public_key()])
    classifier = load_classifier(tmp_path / "broken", manifest, confs(tmp_path), runtime=runtime)  # type: ignore[arg-type]
    with pytest.raises(SelfTestError, match="differ"):
        selftest(classifier, InstalledModel(tmp_path / "broken", manifest))


def test_a_format_1_package_serves_on_openvino_only(tiny_package, tmp_path):
    classifier = load(tiny_package, tmp_path, "openvino")
    selftest(classifier, installed(tiny_package))
    prediction = classifier.classify(class_image("Pro"))
    assert prediction.label == "Pro" and prediction.ood_score is None and not prediction.out_of_distribution
    for runtime in ("onnxruntime", "litert"):
        with pytest.raises(ModelMismatchError, match=f"runtime {runtime} has no model file in this package"):
            load_classifier(tiny_package.unpacked, tiny_package.manifest, confs(tmp_path), runtime=runtime)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "runtime, precision, changes, message",
    [
        ("onnxruntime", "bf16", {}, "no bf16 mode"),
        ("onnxruntime", "f16", {}, "only through TensorRT"),
        ("litert", "f16", {}, "runs f32"),
    ],
)
def test_unsupported_precisions_are_refused_clearly(tiny_package_v2, tmp_path, runtime, precision, changes, message):
    if runtime == "litert" and tiny_package_v2.manifest.model_tflite is None:
        pytest.skip("TensorFlow is not installed, so the test package has no .tflite")
    with pytest.raises(UnsupportedPrecision, match=message):
        load(tiny_package_v2, tmp_path, runtime, precision)
    problems = check_runtime(confs(tmp_path, runtime=runtime, inference_precision=precision))
    assert any(p.startswith("edge_node.inference_precision:") for p in problems)


def test_an_unavailable_execution_provider_is_reported(tiny_package_v2, tmp_path):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA is available here")
    settings = confs(tmp_path, onnxruntime={"providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]})
    with pytest.raises(RuntimeUnavailable, match="CUDAExecutionProvider is not available.*onnxruntime-gpu"):
        load_classifier(tiny_package_v2.unpacked, tiny_package_v2.manifest, settings, runtime="onnxruntime")
    assert any("edge_node.onnxruntime.providers" in p for p in check_runtime(settings.model_copy(update={"runtime": "onnxruntime"})))


def test_a_gpu_provider_that_cannot_start_is_refused_after_its_libraries_were_preloaded(tiny_package_v2, tmp_path, monkeypatch):
    from edge_node.inference import onnxruntime_runtime

    ort = onnxruntime_runtime.ort
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is available here")
    preloaded: list[dict[str, bool]] = []
    # A GPU build on a machine whose CUDA libraries are missing lists the provider, then falls back to the CPU.
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "preload_dlls", lambda **kw: preloaded.append(kw), raising=False)
    settings = confs(tmp_path, onnxruntime={"providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]})
    with pytest.raises(RuntimeUnavailable, match="could not start CUDAExecutionProvider.*fell back to CPUExecutionProvider.*libraries"):
        load_classifier(tiny_package_v2.unpacked, tiny_package_v2.manifest, settings, runtime="onnxruntime")
    assert preloaded == [{"cuda": True, "cudnn": True, "msvc": False}]
    load_classifier(tiny_package_v2.unpacked, tiny_package_v2.manifest, confs(tmp_path), runtime="onnxruntime")
    assert len(preloaded) == 1, "a CPU-only configuration loads no GPU libraries"


def test_a_missing_runtime_is_reported_not_fatal(tiny_package_v2):
    probe = (
        "import sys; sys.modules['onnxruntime'] = None\n"  # what an install without the extra looks like
        "import edge_node.node, edge_node.__main__\n"
        "from contracts.confs import EdgeNodeConfs\n"
        "from contracts.model_package import Manifest\n"
        "from edge_node.inference import RuntimeUnavailable, load_classifier\n"
        "from edge_node.inference.registry import check_runtime\n"
        f"manifest = Manifest.model_validate_json(open({str(tiny_package_v2.unpacked / 'manifest.json')!r}).read())\n"
        "try:\n"
        f"    load_classifier({str(tiny_package_v2.unpacked)!r}, manifest, EdgeNodeConfs(runtime='onnxruntime'))\n"
        "except RuntimeUnavailable as exc:\n    print('REFUSED', exc)\n"
        "print('CHECK', check_runtime(EdgeNodeConfs(runtime='onnxruntime')))\n"
        f"c = load_classifier({str(tiny_package_v2.unpacked)!r}, manifest, EdgeNodeConfs())\n"
        "print('OPENVINO', c.runtime)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=90,
        env={**os.environ, "PYTHONPATH": f"{ROOT}"}, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "REFUSED runtime onnxruntime is not installed" in result.stdout
    assert "pip install '.[edge-onnx]'" in result.stdout and "CHECK [\"edge_node.runtime:" in result.stdout
    assert "OPENVINO openvino" in result.stdout


def test_the_simulators_stand_in_follows_the_same_protocol(tiny_package_v2, tmp_path):
    real = load(tiny_package_v2, tmp_path, "onnxruntime")
    cheap = CheapClassifier(real)
    assert isinstance(cheap, Classifier)
    assert (cheap.runtime, cheap.device, cheap.precision, cheap.model_version) == (
        "onnxruntime", "CPUExecutionProvider", "f32", "2.0.0"
    )
    prediction = cheap.classify(class_image("Pre"))
    assert set(prediction.probabilities) == set(CLASSES) and prediction.model_version == "2.0.0"


def test_each_runtime_has_an_extra_without_tensorflow():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    wants = {"edge": "openvino", "edge-onnx": "onnxruntime", "edge-litert": "ai-edge-litert"}
    for extra, runtime in wants.items():
        names = [dep.split(">")[0].split("=")[0].split("<")[0].strip().lower() for dep in extras[extra]]
        assert runtime in names and not any("tensorflow" in n or "keras" in n for n in names), extra
        assert extra == "edge" or "openvino" not in names, extra
