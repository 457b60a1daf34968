"""Metrics, the colour baseline, and the preprocessing layers inside the model."""

from __future__ import annotations

import numpy as np
import pytest

from trainer import augment as A
from trainer.baseline import ColourBaseline
from trainer.metrics import classification_report, expected_calibration_error


def test_report_counts_per_class_scores_and_confusion() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(3)[[0, 1, 1, 1, 2, 0]] * 0.9 + 0.1 / 3
    report = classification_report(labels, probs, ["a", "b", "c"])
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert report["per_class"]["b"] == {"precision": pytest.approx(2 / 3), "recall": 1.0, "f1": pytest.approx(0.8), "support": 2}
    assert report["macro_recall"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert report["n_images"] == 6 and report["labels"] == ["a", "b", "c"]


def test_ece_is_zero_when_confidence_matches_accuracy() -> None:
    labels = np.array([0, 1, 0, 1])
    assert expected_calibration_error(np.eye(2)[labels], labels) == pytest.approx(0.0)
    wrong = np.eye(2)[1 - labels]
    assert expected_calibration_error(wrong, labels) == pytest.approx(1.0)


def test_colour_baseline_learns_colours_and_fails_in_grayscale() -> None:
    rng = np.random.default_rng(0)
    colours = np.array([[200, 120, 120], [120, 120, 200]])
    labels = rng.integers(0, 2, 80)
    images = np.clip(colours[labels][:, None, None, :] + rng.normal(0, 8, (80, 16, 16, 3)), 0, 255).astype(np.uint8)
    baseline = ColourBaseline().fit(images[:60], labels[:60])
    assert (baseline.predict_proba(images[60:]).argmax(1) == labels[60:]).mean() == 1.0
    gray = np.stack([A.grayscale(i) for i in images[60:]])
    assert (baseline.predict_proba(gray).argmax(1) == labels[60:]).mean() < 1.0


def test_model_mask_layer_matches_the_numpy_mask() -> None:
    from trainer.layers import ScaleBarMask

    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3)).astype(np.uint8)
    layer_out = np.asarray(ScaleBarMask()(image[None].astype(np.float32)))[0]
    assert np.abs(layer_out - A.mask_scale_bar(image).astype(np.float32)).max() <= 0.5 + 1e-4


@pytest.mark.parametrize("name", ["small_cnn", "mobilenet_v2", "inception_v3"])
def test_models_take_raw_rgb_and_give_probabilities(name: str) -> None:
    from trainer.model import INPUT_NAME, ModelSpec, build_model

    size = 96 if name == "inception_v3" else 64
    spec = ModelSpec(name=name, n_classes=3, image_size=size, internal_size=size if name == "inception_v3" else 32, width=4)
    model = build_model(spec)
    assert model.inputs[0].name == INPUT_NAME
    probs = np.asarray(model(np.full((2, size, size, 3), 200.0, np.float32)))
    assert probs.shape == (2, 3) and np.allclose(probs.sum(1), 1.0, atol=1e-5)


def test_grayscale_model_ignores_colour_order_only_through_luminance() -> None:
    from trainer.model import ModelSpec, build_model

    model = build_model(ModelSpec(n_classes=2, image_size=32, internal_size=32, grayscale=True, width=4))
    img = np.random.default_rng(2).integers(0, 256, (1, 32, 32, 3)).astype(np.float32)
    gray = np.repeat((img @ np.array([0.299, 0.587, 0.114], np.float32))[..., None], 3, axis=-1)
    assert np.allclose(np.asarray(model(img)), np.asarray(model(gray)), atol=1e-4)


def test_residual_squeeze_excite_model_trains_on_crops_and_exports_to_every_runtime(tmp_path, runtimes_match_keras) -> None:  # type: ignore[no-untyped-def]
    from trainer.model import ModelSpec, build_core, build_model

    spec = ModelSpec(n_classes=3, image_size=64, internal_size=64, width=4, residual=True, squeeze_excite=True)
    plain = build_model(ModelSpec(n_classes=3, image_size=64, internal_size=64, width=4))
    model = build_model(spec)
    names = {layer.name for layer in model.get_layer("core").layers}
    assert {"block3_add", "block4_add", "block3_se", "block4_se", "block4b_relu"} <= names
    assert model.count_params() > plain.count_params()
    crop = np.asarray(build_core(spec)(np.full((1, 40, 40, 3), 128.0, np.float32)))
    assert crop.shape == (1, 3)
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (4, 64, 64, 3)).astype(np.uint8)
    runtimes_match_keras(model, images, tmp_path, 64)
