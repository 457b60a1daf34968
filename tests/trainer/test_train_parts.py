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
