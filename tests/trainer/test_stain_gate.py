"""The stain gate on synthetic smears: over-stained fields flagged, ordinary shifts passed, same in Keras."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from contracts.confs import TrainerConfs
from trainer import augment as A
from trainer.augment import mask_scale_bar
from trainer.ood import MahalanobisFit, with_threshold
from trainer.stain import hed_jitter
from trainer.stain_gate import (
    LargerScore,
    StainSpreadRatio,
    combined_scores,
    fit_stain_limits,
    stain_ratios,
    stain_spread,
)


def smear(rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """A pale field with four pink cells around purple nuclei, of varying stain strength."""
    field = np.full((size, size, 3), (238, 232, 236), np.float64) + rng.normal(0, 2, (size, size, 3))
    strength = rng.uniform(0.85, 1.15)
    for row in range(2):
        for col in range(2):
            centre = (int(24 + 48 * col + rng.integers(-4, 5)), int(24 + 48 * row + rng.integers(-4, 5)))
            cv2.circle(field, centre, int(rng.integers(12, 16)), (235, 170, 190), -1)
            nucleus = np.array((235, 232, 236)) - strength * np.array((120, 170, 80))
            cv2.circle(field, centre, int(rng.integers(7, 10)), tuple(float(v) for v in nucleus), -1)
    return np.clip(field, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def fields() -> np.ndarray:
    """300 synthetic fields: 200 to fit the gate, 100 held out."""
    rng = np.random.default_rng(0)
    return np.stack([smear(rng) for _ in range(300)])


def test_gate_flags_over_stained_fields_and_passes_ordinary_shifts(fields: np.ndarray) -> None:
    limits = fit_stain_limits(fields[:200], 0.98)
    held_out = fields[200:]
    assert (stain_ratios(held_out, limits) > 1).mean() <= 0.05
    over_stained = np.stack([hed_jitter(f, np.array([2.5, 2.5, 1.0]), np.zeros(3)) for f in held_out])
    assert (stain_ratios(over_stained, limits) > 1).mean() >= 0.95
    for shift in (lambda f: A.brightness(f, 0.85), lambda f: A.saturation(f, 1.4), A.grayscale):
        shifted = np.stack([shift(f) for f in held_out])
        assert (stain_ratios(shifted, limits) > 1).mean() <= 0.05


def test_brightness_leaves_the_spread_unchanged_and_stain_scales_it(fields: np.ndarray) -> None:
    field = fields[:1]
    base = stain_spread(field)[0]
    darker = stain_spread(np.stack([A.brightness(field[0], 0.85)]))[0]
    np.testing.assert_allclose(darker, base, rtol=0.05)
    doubled = stain_spread(np.stack([hed_jitter(field[0], np.array([2.0, 2.0, 1.0]), np.zeros(3))]))[0]
    assert (doubled > 1.6 * base).all()


def test_keras_layer_matches_numpy(fields: np.ndarray) -> None:
    limits = fit_stain_limits(fields[:100], 0.9)
    batch = fields[100:110]
    masked = np.stack([mask_scale_bar(f) for f in batch]).astype(np.float32)
    layer = StainSpreadRatio(limits)
    np.testing.assert_allclose(np.asarray(layer(masked)), stain_ratios(batch, limits), rtol=1e-3)
    rebuilt = StainSpreadRatio.from_config(layer.get_config())
    np.testing.assert_allclose(rebuilt.limits, limits)


def test_combined_score_is_the_larger_in_threshold_units() -> None:
    feature = np.array([0.5, 3.0, 0.2], np.float32)
    ratio = np.array([0.4, 0.1, 1.5], np.float32)
    expected = [0.8, 3.0, 3.0]
    np.testing.assert_allclose(combined_scores(feature, ratio, 2.0), expected)
    np.testing.assert_allclose(np.asarray(LargerScore(2.0)(feature, ratio)), expected)


def test_fit_with_stain_limits_survives_save_load_and_threshold(tmp_path, fields: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    limits = fit_stain_limits(fields[:50], 0.98)
    fit = MahalanobisFit(np.zeros((2, 3), np.float32), np.eye(3, dtype=np.float32), 1.0, limits)
    fit = with_threshold(fit, np.linspace(0, 1, 101), 0.9)
    assert fit.stain_limits is not None and fit.threshold == pytest.approx(0.9)
    fit.save(tmp_path / "ood.npz")
    loaded = MahalanobisFit.load(tmp_path / "ood.npz")
    np.testing.assert_array_equal(loaded.stain_limits, limits)
    MahalanobisFit(fit.means, fit.transform, 1.0).save(tmp_path / "plain.npz")
    assert MahalanobisFit.load(tmp_path / "plain.npz").stain_limits is None


def test_fitting_on_no_images_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least one image"):
        fit_stain_limits(np.zeros((0, 8, 8, 3), np.uint8), 0.98)


@pytest.mark.parametrize("value", [0.2, 1.5, "high"])
def test_stain_quantile_out_of_range_is_rejected(value: object) -> None:
    with pytest.raises(ValidationError, match="ood_stain_quantile"):
        TrainerConfs.model_validate({"ood_stain_quantile": value})


def test_stain_gate_can_be_switched_off() -> None:
    assert TrainerConfs.model_validate({"ood_stain_quantile": None}).ood_stain_quantile is None
    assert TrainerConfs().ood_stain_quantile == 0.98


def test_stain_augmentation_settings_reach_the_augmenter() -> None:
    from trainer.config import augment_config

    confs = TrainerConfs.model_validate({"stain_augment": {"p_hed": 0.8, "hed_sigma": 0.25}})
    config = augment_config(confs)
    assert (config.p_hed, config.hed_sigma) == (0.8, 0.25)
    assert augment_config(TrainerConfs()).hed_sigma == 0.08


@pytest.mark.parametrize("section", [{"p_hed": 1.5}, {"hed_sigma": -0.1}, {"hed_sigma": 0.9}, {"sigma": 0.1}, {"p_hed": "often"}])
def test_bad_stain_augmentation_settings_are_rejected(section: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="stain_augment"):
        TrainerConfs.model_validate({"stain_augment": section})


def test_blur_augmentation_settings_reach_the_augmenter_and_blur() -> None:
    from trainer.augment import Augmenter
    from trainer.config import augment_config

    config = augment_config(TrainerConfs.model_validate({"blur_augment": {"p_blur": 1.0, "max_sigma": 2.5}}))
    assert (config.p_blur, config.blur_sigma) == (1.0, (0.3, 2.5))
    assert augment_config(TrainerConfs()).blur_sigma == (0.3, 1.2), "the default is the released recipe's"
    only_blur = dataclasses.replace(config, p_flip=0, p_rotate=0, p_color=0, p_hed=0, p_equalize=0, p_grayscale=0, p_jpeg=0)
    edges = np.zeros((32, 32, 3), np.uint8)
    edges[:, ::2] = 255
    out = Augmenter(only_blur)(edges, np.random.default_rng(0))
    assert np.abs(np.diff(out.astype(int), axis=1)).mean() < np.abs(np.diff(edges.astype(int), axis=1)).mean() / 2


@pytest.mark.parametrize("section", [{"p_blur": -0.1}, {"max_sigma": 0.1}, {"max_sigma": 9}, {"sigma": 1}])
def test_bad_blur_augmentation_settings_are_rejected(section: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="blur_augment"):
        TrainerConfs.model_validate({"blur_augment": section})
