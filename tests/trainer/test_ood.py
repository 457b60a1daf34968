"""The OOD detector on synthetic features and images: far inputs flagged, in-distribution ones passed."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.ood import MahalanobisFit, fit_mahalanobis, with_threshold
from trainer.ood_sets import blank_fields, downscaled_mosaics, ood_sets, zoomed_cells
from trainer.stain import hed_jitter, hed_to_rgb, random_hed_jitter, rgb_to_hed


def _clusters(rng: np.random.Generator, n: int, dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    centres = rng.normal(0, 5, (3, dim))
    labels = rng.integers(0, 3, n)
    return centres[labels] + rng.normal(0, 1, (n, dim)), labels


def test_mahalanobis_flags_far_points_and_passes_held_out_in_distribution_ones() -> None:
    rng = np.random.default_rng(0)
    features, labels = _clusters(rng, 600)
    fit = fit_mahalanobis(features[:400], labels[:400], 3)
    fit = with_threshold(fit, fit.scores(features[400:500]), 0.99)
    held_out = fit.scores(features[500:])
    assert (held_out > fit.threshold).mean() <= 0.05
    far = rng.normal(0, 1, (50, 16)) + 40.0
    assert (fit.scores(far) > fit.threshold).all()


def test_scores_are_the_smallest_class_distance(tmp_path) -> None:  # type: ignore[no-untyped-def]
    means = np.array([[0.0, 0.0], [10.0, 0.0]], np.float32)
    fit = MahalanobisFit(means, np.eye(2, dtype=np.float32), threshold=1.5)
    scores = fit.scores(np.array([[1.0, 0.0], [9.0, 1.0]], np.float32))
    np.testing.assert_allclose(scores, [0.5, 1.0])  # squared distance over the dimension
    fit.save(tmp_path / "ood.npz")
    loaded = MahalanobisFit.load(tmp_path / "ood.npz")
    assert loaded.threshold == 1.5 and np.array_equal(loaded.means, means)


def test_keras_score_layer_matches_numpy() -> None:
    from trainer.ood import MahalanobisScore

    rng = np.random.default_rng(1)
    features, labels = _clusters(rng, 300, dim=8)
    fit = fit_mahalanobis(features, labels, 3)
    layer = MahalanobisScore(fit.means, fit.transform)
    probe = features[:10].astype(np.float32)
    np.testing.assert_allclose(np.asarray(layer(probe)), fit.scores(probe), rtol=1e-4)


def test_hed_round_trip_and_jitter_changes_stain_only_within_bounds() -> None:
    rng = np.random.default_rng(2)
    image = rng.integers(120, 250, (32, 32, 3)).astype(np.uint8)
    assert np.abs(hed_to_rgb(rgb_to_hed(image)).astype(int) - image).max() <= 1
    same = hed_jitter(image, np.ones(3), np.zeros(3))
    assert np.abs(same.astype(int) - image).max() <= 1
    jittered = random_hed_jitter(image, rng, 0.08)
    assert jittered.shape == image.shape and jittered.dtype == np.uint8 and not np.array_equal(jittered, image)


def test_ood_sets_have_the_field_size_and_are_unlike_the_fields() -> None:
    rng = np.random.default_rng(3)
    fields = rng.integers(150, 250, (20, 64, 64, 3)).astype(np.uint8)
    fields[:, 20:30, 20:30] = 60  # a dark "nucleus" for the zoom to find
    zoomed = zoomed_cells(fields[:2])
    assert zoomed.shape == (2, 64, 64, 3) and zoomed.mean() < fields[:2].mean()
    assert downscaled_mosaics(fields[:8]).shape == (2, 64, 64, 3)
    assert blank_fields(fields[:3], seed=0).std(axis=(1, 2)).max() < 5
    pytest.importorskip("skimage", reason="scikit-image ships the natural and microscopy samples")
    sets = ood_sets(fields, seed=0, n=4)
    assert {"natural images", "other microscopy", "zoomed cells (4x)", "black", "blank fields"} <= set(sets)
    assert all(batch.shape[1:] == (64, 64, 3) and batch.dtype == np.uint8 and len(batch) for batch in sets.values())


def test_evaluate_ood_keeps_the_in_distribution_rate_apart_from_the_sets() -> None:
    from types import SimpleNamespace

    from contracts.selftest import RawOutputs
    from trainer.ood_report import evaluate_ood

    pytest.importorskip("skimage", reason="scikit-image ships the natural and microscopy samples")
    rng = np.random.default_rng(4)
    images = np.clip(rng.normal(150, 25, (60, 64, 64, 3)), 0, 255).astype(np.uint8)
    labels = rng.integers(0, 4, 60)
    dataset = SimpleNamespace(images=images, labels=labels)
    index = SimpleNamespace(split={"test": np.arange(60)})

    def infer(batch: np.ndarray) -> RawOutputs:
        """Dark images are 'far': the stain x2.5 set is, the clean fields are not."""
        probs = np.full((len(batch), 4), 0.1, np.float32)
        probs[:, 0] = 0.7
        return RawOutputs(probs, np.where(batch.mean(axis=(1, 2, 3)) < 110, 5.0, 0.1).astype(np.float32))

    evaluation = evaluate_ood(infer, dataset, index, threshold=1.0, seed=0)  # type: ignore[arg-type]
    assert evaluation["in_distribution_test_flag_rate"] == 0.0
    assert evaluation["sets"]["black"]["flagged"] == 1.0 and evaluation["sets"]["stain x2.5 (HED)"]["flagged"] == 1.0
    assert evaluation["sets"]["stain x2.5 (HED)"]["unflagged_wrong"] == 0
