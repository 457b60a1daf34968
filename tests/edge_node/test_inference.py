"""The OpenVINO classifier: loads a package, checks it against the manifest, classifies, swaps, reports why none serves."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from contracts.confs import OpenVinoConfs
from edge_node.inference import ModelHolder, ModelMismatchError
from edge_node.inference.openvino_runtime import OpenVinoClassifier
from support.tiny_package import CLASSES, class_image


@pytest.fixture(scope="module")
def classifier(tiny_package) -> OpenVinoClassifier:
    return OpenVinoClassifier(tiny_package.unpacked, tiny_package.manifest)


@pytest.mark.parametrize("label", CLASSES)
def test_classifies_each_synthetic_class_with_all_probabilities(classifier, label):
    prediction = classifier.classify(class_image(label, seed=7))
    assert prediction.label == label
    assert set(prediction.probabilities) == set(CLASSES)
    assert abs(sum(prediction.probabilities.values()) - 1.0) < 1e-3
    assert prediction.confidence == max(prediction.probabilities.values())
    assert prediction.model_version == "1.0.0"
    assert prediction.inference_ms > 0


def test_any_image_size_is_resized_to_the_model_input(classifier):
    big = np.kron(class_image("Pre", size=100), np.ones((7, 5, 1), dtype=np.uint8))
    assert classifier.classify(big).label == "Pre"
    assert classifier.classify(class_image("Early", size=31)).label == "Early"


def test_low_confidence_is_flagged_uncertain(tiny_package):
    strict = OpenVinoClassifier(tiny_package.unpacked, tiny_package.manifest, confidence_threshold=1.0)
    lenient = OpenVinoClassifier(tiny_package.unpacked, tiny_package.manifest, confidence_threshold=0.0)
    grey = np.full((64, 64, 3), 128, dtype=np.uint8)
    assert strict.classify(grey).uncertain is True
    assert lenient.classify(grey).uncertain is False


def test_infer_raw_reproduces_the_selftest_outputs(classifier, tiny_package):
    data = np.load(tiny_package.unpacked / "selftest.npz")
    outputs = classifier.infer_raw(data["inputs"]).probabilities
    assert outputs.shape == (len(data["inputs"]), len(CLASSES))
    np.testing.assert_allclose(outputs, data["outputs"], atol=tiny_package.manifest.selftest.atol)


def test_infer_raw_refuses_a_wrongly_shaped_batch(classifier):
    with pytest.raises(ValueError, match="does not match the model input"):
        classifier.infer_raw(np.zeros((1, 100, 100, 3), dtype=np.uint8))


def test_classify_refuses_a_non_rgb_array(classifier):
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        classifier.classify(np.zeros((10, 10), dtype=np.uint8))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"input": {"name": "pixels"}}, "IR input is named"),
        ({"input": {"shape": [1, 128, 128, 3]}}, "IR input shape"),
        ({"input": {"dtype": "uint8"}}, "IR input type"),
        ({"output": {"name": "logits"}}, "do not include"),
        ({"classes": ["a", "b", "c"]}, "classes"),
        ({"input": {"scale": "imagenet"}}, "scale"),
    ],
)
def test_refuses_an_ir_that_disagrees_with_its_manifest(tiny_package, change, message):
    data = tiny_package.manifest.model_dump()
    for key, value in change.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    manifest = type(tiny_package.manifest).model_validate(data)
    with pytest.raises(ModelMismatchError, match=message):
        OpenVinoClassifier(tiny_package.unpacked, manifest)


def test_refuses_a_missing_ir_file(tiny_package, tmp_path: Path):
    shutil.copytree(tiny_package.unpacked, tmp_path / "pkg")
    (tmp_path / "pkg" / "model.bin").unlink()
    with pytest.raises(ModelMismatchError, match="cannot read the IR"):
        OpenVinoClassifier(tmp_path / "pkg", tiny_package.manifest)


def test_refuses_an_unknown_device(tiny_package):
    with pytest.raises(ModelMismatchError, match=r"cannot compile .* on MYRIAD \(MYRIAD needs OpenVINO 2022.3 LTS\)"):
        OpenVinoClassifier(tiny_package.unpacked, tiny_package.manifest, OpenVinoConfs(device="MYRIAD"))


def test_holder_swap_lets_in_flight_work_finish_on_the_old_model(tiny_package, classifier):
    holder = ModelHolder(classifier)
    taken = holder.current()
    replacement = OpenVinoClassifier(tiny_package.unpacked, tiny_package.manifest, confidence_threshold=0.1)
    old = holder.swap(replacement)
    assert old is classifier and holder.current() is replacement
    assert taken.classify(class_image("Pro")).label == "Pro"


def test_classifier_is_safe_from_several_threads(classifier):
    errors: list[BaseException] = []
    labels: list[str] = []

    def work(label: str) -> None:
        try:
            for seed in range(10):
                assert classifier.classify(class_image(label, seed=seed)).label == label
            labels.append(label)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(label,)) for label in CLASSES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors and sorted(labels) == sorted(CLASSES)


def test_an_empty_holder_says_why_nothing_serves(classifier):
    holder = ModelHolder()
    assert holder.reason == "no model is installed yet"
    assert holder.serving_info() == {"runtime": None, "inference_device": None, "precision": None}
    holder.mark_unavailable("model 1.5.0 cannot serve: outputs differ")
    assert holder.reason == "model 1.5.0 cannot serve: outputs differ"
    holder.swap(classifier)
    assert holder.reason is None
    assert holder.serving_info() == {"runtime": "openvino", "inference_device": "CPU", "precision": "f32"}
