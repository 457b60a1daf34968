"""The node's self-test (contracts.selftest at the precision in effect): reproduce the package's outputs or refuse."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from contracts.model_package import unpack_package
from contracts.selftest import SelfTestSet, load_selftest_set
from edge_node.inference.openvino_runtime import OpenVinoClassifier
from edge_node.model_store import InstalledModel
from edge_node.selftest import SelfTestError, selftest
from tests.edge_node.ota_support import OtaPackages, build_ota_packages


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> OtaPackages:
    return build_ota_packages(tmp_path_factory.mktemp("selftest-packages"))


def unpacked(package: Path, dest: Path, packages: OtaPackages) -> InstalledModel:
    return InstalledModel(dest, unpack_package(package, dest, packages.trusted))


@pytest.fixture(scope="module")
def good(tmp_path_factory, packages) -> InstalledModel:
    return unpacked(packages.v1, tmp_path_factory.mktemp("good") / "pkg", packages)


@pytest.fixture(scope="module")
def classifier(good) -> OpenVinoClassifier:
    return OpenVinoClassifier(good.path, good.manifest)


def with_selftest(good: InstalledModel, dest: Path, **arrays: np.ndarray) -> InstalledModel:
    """A copy of the good slot whose self-test file holds the given arrays."""
    shutil.copytree(good.path, dest)
    np.savez(dest / good.manifest.selftest.file, **arrays)
    return InstalledModel(dest, good.manifest)


def reference(model: InstalledModel) -> tuple[np.ndarray, np.ndarray]:
    data: SelfTestSet = load_selftest_set(model.path / model.manifest.selftest.file, model.manifest)
    return data.inputs, data.probabilities


def test_a_good_model_reproduces_its_outputs(classifier, good):
    selftest(classifier, good)


def test_a_package_whose_outputs_do_not_match_fails(tmp_path, packages):
    broken = unpacked(packages.broken_selftest, tmp_path / "broken", packages)
    with pytest.raises(SelfTestError, match="differ"):
        selftest(OpenVinoClassifier(broken.path, broken.manifest), broken)


def test_outputs_just_past_the_tolerance_fail(classifier, good, tmp_path):
    inputs, outputs = reference(good)
    nudged = outputs + np.float32(good.manifest.selftest.atol * 3)
    with pytest.raises(SelfTestError, match="allowed"):
        selftest(classifier, with_selftest(good, tmp_path / "nudged", inputs=inputs, outputs=nudged))


def test_a_different_model_on_the_same_inputs_fails(good, tmp_path, packages):
    other = unpacked(packages.v2, tmp_path / "other", packages)
    inputs, outputs = reference(good)
    swapped = with_selftest(good, tmp_path / "swapped", inputs=inputs, outputs=np.roll(outputs, 2, axis=1))
    with pytest.raises(SelfTestError):
        selftest(OpenVinoClassifier(other.path, other.manifest), swapped)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"inputs": np.zeros((1, 224, 224, 3), np.uint8)}, "needs 'inputs' and 'outputs'"),
        ({"inputs": np.zeros((1, 224, 224, 3), np.float32), "outputs": np.zeros((1, 4), np.float32)}, "uint8"),
        ({"inputs": np.zeros((1, 224, 224, 3), np.uint8), "outputs": np.zeros((1, 3), np.float32)}, "outputs must be"),
        ({"inputs": np.zeros((0, 224, 224, 3), np.uint8), "outputs": np.zeros((0, 4), np.float32)}, "samples"),
        ({"inputs": np.zeros((1, 10, 10, 3), np.uint8), "outputs": np.zeros((1, 4), np.float32)}, "inference failed"),
        ({"inputs": np.array([{"a": 1}], dtype=object), "outputs": np.zeros((1, 4), np.float32)}, "cannot be read"),
    ],
)
def test_malformed_selftest_sets_are_clear_errors(classifier, good, tmp_path, arrays, message):
    with pytest.raises(SelfTestError, match=message):
        selftest(classifier, with_selftest(good, tmp_path / "bad", **arrays))


def test_a_selftest_file_that_is_not_npz_is_a_clear_error(classifier, good, tmp_path):
    bad = with_selftest(good, tmp_path / "garbage")
    (bad.path / good.manifest.selftest.file).write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(SelfTestError, match="cannot be read"):
        selftest(classifier, bad)
