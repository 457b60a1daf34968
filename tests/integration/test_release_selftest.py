"""The committed release self-tests on the machine at hand: every runtime, every precision this CPU runs natively.

This is what a node does before it serves. A release whose tolerances only hold on the trainer's CPU
fails here on a machine with other features (AMX, AVX512-BF16, AVX512-FP16), not in a hospital.
"""

from __future__ import annotations

import json
from pathlib import Path

import openvino as ov
import pytest

from contracts.confs import load_confs
from contracts.model_package import parse_public_key, unpack_package, version_key
from contracts.selftest import SelfTestError
from edge_node.inference import load_classifier
from edge_node.model_store import InstalledModel
from edge_node.selftest import selftest

REPO = Path(__file__).resolve().parents[2]


def _release() -> Path:
    found = [(version_key(p.name[:-7].rsplit("-", 1)[-1]), p) for p in (REPO / "models").glob("*-*.*.*.tar.gz")]
    assert found, "no released package models/NAME-X.Y.Z.tar.gz"
    return max(found)[1]


def _native_precisions() -> list[str]:
    capabilities = set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    return ["f32"] + [p for p, cap in (("bf16", "BF16"), ("f16", "FP16")) if cap in capabilities]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> InstalledModel:
    """The newest committed package, verified with the repository's trusted keys and unpacked."""
    confs = load_confs(REPO / "confs.json")
    keys = [parse_public_key(k) for k in confs.ota.trusted_public_keys]
    path = tmp_path_factory.mktemp("release") / "pkg"
    return InstalledModel(path, unpack_package(_release(), path, keys))


CASES = [("openvino", p) for p in _native_precisions()] + [("openvino", "auto"), ("onnxruntime", "f32"), ("litert", "f32")]


@pytest.mark.parametrize(("runtime", "precision"), CASES, ids=[f"{r}-{p}" for r, p in CASES])
def test_release_self_tests_on_this_machine(installed: InstalledModel, runtime: str, precision: str) -> None:
    manifest = installed.manifest
    if manifest.format == 1 and runtime != "openvino":
        pytest.skip(f"format-1 package {manifest.version} carries only the OpenVINO IR")
    confs = load_confs(REPO / "confs.json").edge_node
    classifier = load_classifier(installed.path, manifest, confs, runtime=runtime, precision=precision)  # type: ignore[arg-type]
    try:
        result = selftest(classifier, installed)
    except SelfTestError as exc:
        pytest.fail(f"{manifest.name} {manifest.version} on {runtime} at {classifier.precision}: {exc}")
    print(json.dumps({"runtime": runtime, "precision": classifier.precision, "max_abs_diff": result.max_abs_diff,
                      "tolerance": result.tolerance, "ood_max_rel_diff": result.ood_max_rel_diff}))
    assert result.label_disagreements == 0 and result.max_abs_diff <= result.tolerance


def test_release_is_format_2_with_every_runtime_and_an_ood_detector(installed: InstalledModel) -> None:
    manifest = installed.manifest
    assert manifest.format == 2 and manifest.model_onnx and manifest.model_tflite
    assert manifest.ood is not None and manifest.ood.threshold > 0
    assert manifest.selftest.tolerances["f32"] < manifest.selftest.tolerances["bf16"]
