"""Pieces of the training loop: class weights, the budget-fitted schedule, augmented epochs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest


def test_class_weights_balance_the_smaller_class() -> None:
    from trainer.train import class_weights

    weights = class_weights(np.array([0] * 10 + [1] * 30), 2)
    assert weights[0] == pytest.approx(2.0) and weights[1] == pytest.approx(2 / 3)


def test_fitted_cosine_warms_up_then_anneals_to_the_floor() -> None:
    from trainer.train import FittedCosine

    schedule = FittedCosine(peak=0.01, epochs=10, seconds=1e6)
    rates = [schedule.rate(e) for e in range(10)]
    assert rates[0] < rates[1] == pytest.approx(0.01)
    assert all(a >= b for a, b in itertools.pairwise(rates[1:]))
    assert rates[-1] == pytest.approx(0.01 * 0.02)


def test_augmented_epochs_are_reproducible_masked_crops() -> None:
    from trainer.augment import Augmenter
    from trainer.train import AugmentedEpochs

    images = np.random.default_rng(0).integers(0, 256, (10, 64, 64, 3)).astype(np.uint8)
    labels = np.arange(10) % 2

    def first_batches(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
        it = iter(AugmentedEpochs(images, labels, 4, Augmenter(), seed, crop=48, mask=True))
        return [next(it) for _ in range(4)]

    a, b, c = first_batches(1), first_batches(1), first_batches(2)
    assert a[0][0].shape == (4, 48, 48, 3) and a[2][0].shape == (2, 48, 48, 3)
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    assert not np.array_equal(a[0][0], c[0][0])
    assert sorted(np.concatenate([a[i][1] for i in range(3)]).tolist()) == sorted(labels.tolist())


def _epochs() -> tuple[object, np.ndarray]:
    from trainer.augment import Augmenter
    from trainer.train import AugmentedEpochs

    images = np.random.default_rng(3).integers(0, 256, (6, 32, 32, 3)).astype(np.uint8)
    labels = np.array([0, 1, 1, 1, 0, 1])
    return AugmentedEpochs(images, labels, 4, Augmenter(), seed=5), labels


def test_tensorflow_batches_carry_each_samples_class_weight() -> None:
    epochs, _ = _epochs()
    images, labels, weights = next(iter(epochs.dataset(np.array([3.0, 0.5]))))
    assert images.dtype.name == "float32" and tuple(images.shape) == (4, 32, 32, 3)
    assert np.allclose(weights.numpy(), np.where(labels.numpy() == 0, 3.0, 0.5))


def test_other_backends_get_a_plain_generator_with_the_same_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    epochs, _ = _epochs()
    batches = epochs.dataset(np.array([3.0, 0.5]))
    assert not hasattr(batches, "element_spec"), "no tf.data on a backend without TensorFlow"
    images, labels, weights = next(batches)
    assert images.dtype == np.float32 and images.shape == (4, 32, 32, 3)
    assert np.allclose(weights, np.where(labels == 0, 3.0, 0.5))


def test_keras_predict_gives_probabilities_for_uint8_images_and_handles_none() -> None:
    from trainer.model import ModelSpec, build_model
    from trainer.predict import keras_predict

    model = build_model(ModelSpec(n_classes=3, image_size=32, internal_size=16, width=4))
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3)).astype(np.uint8)
    probs = keras_predict(model, images, batch_size=2)
    assert probs.shape == (5, 3) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert keras_predict(model, images[:0]).shape == (0, 3)
