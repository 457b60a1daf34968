"""Each augmentation keeps shape, dtype and range, and random augmentation is reproducible from a seed."""

from __future__ import annotations

import numpy as np
import pytest

from contracts.confs import TrainerConfs
from pydantic import ValidationError

from trainer import augment as A
from trainer.config import augment_config

RNG = np.random.default_rng(5)
IMAGE = np.clip(RNG.normal(170, 40, (48, 64, 3)), 0, 255).astype(np.uint8)

TRANSFORMS = {
    "grayscale": A.grayscale,
    "equalize": A.equalize_histogram,
    "flip_h": lambda i: A.flip(i, True),
    "flip_v": lambda i: A.flip(i, False),
    "blur": lambda i: A.gaussian_blur(i, 1.0),
    "rotate": lambda i: A.rotate(i, 30),
    "zoom_in": lambda i: A.zoom(i, 1.25),
    "zoom_out": lambda i: A.zoom(i, 0.8),
    "hue": lambda i: A.hue_shift(i, 20),
    "saturation": lambda i: A.saturation(i, 0.5),
    "brightness": lambda i: A.brightness(i, 1.2),
    "contrast": lambda i: A.contrast(i, 0.8),
    "jpeg": lambda i: A.jpeg(i, 50),
    "mask": A.mask_scale_bar,
}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_each_augmentation_keeps_shape_dtype_and_changes_the_image(name: str) -> None:
    out = TRANSFORMS[name](IMAGE)
    assert out.shape == IMAGE.shape and out.dtype == np.uint8
    assert 0 <= int(out.min()) and int(out.max()) <= 255
    assert not np.array_equal(out, IMAGE)
    assert np.array_equal(TRANSFORMS[name](IMAGE), out)  # deterministic given its parameters


def test_grayscale_has_equal_channels_and_flips_are_reflections() -> None:
    gray = A.grayscale(IMAGE)
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
    assert np.array_equal(A.flip(IMAGE, True)[:, 0], IMAGE[:, -1])
    assert np.array_equal(A.flip(IMAGE, False)[0], IMAGE[-1])


def test_identity_parameters_change_nothing_much() -> None:
    assert np.array_equal(A.brightness(IMAGE, 1.0), IMAGE)
    assert np.abs(A.hue_saturation(IMAGE, 0.0, 1.0).astype(int) - IMAGE).max() <= 8  # HSV is quantised to uint8


def test_brightness_darkens_and_mask_fills_only_the_corner() -> None:
    assert A.brightness(IMAGE, 0.8).mean() < IMAGE.mean()
    masked = A.mask_scale_bar(IMAGE)
    top, left = A.scale_bar_box(*IMAGE.shape[:2])
    assert np.array_equal(masked[:top], IMAGE[:top]) and np.array_equal(masked[:, :left], IMAGE[:, :left])
    assert len(np.unique(masked[top:, left:].reshape(-1, 3), axis=0)) == 1


def test_random_augmenter_is_reproducible_with_a_seed_and_varies_without() -> None:
    batch = np.stack([IMAGE, IMAGE[::-1].copy(), IMAGE[:, ::-1].copy()])
    augmenter = A.Augmenter()
    first = augmenter.batch(batch, np.random.default_rng(11))
    again = augmenter.batch(batch, np.random.default_rng(11))
    other = augmenter.batch(batch, np.random.default_rng(12))
    assert first.shape == batch.shape and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert augmenter.batch(batch[:0], np.random.default_rng(0)).shape == (0, 48, 64, 3)


def test_zoom_magnifies_about_its_centre_and_keeps_the_size() -> None:
    square = np.zeros((64, 64, 3), np.uint8)
    square[24:40, 24:40] = 255
    bigger, smaller = A.zoom(square, 1.5), A.zoom(square, 1 / 1.5, centre=(31.5, 31.5))
    assert bigger.shape == smaller.shape == square.shape
    assert (bigger[..., 0] > 127).sum() == pytest.approx(24 * 24, rel=0.1)
    assert (smaller[28:36, 28:36, 0] > 127).all() and (smaller[20:23, 20:23, 0] < 128).all()
    assert np.array_equal(A.zoom(square, 1.0), square)


def test_zoom_settings_reach_the_augmenter_and_zoom_off_keeps_the_random_stream() -> None:
    config = augment_config(TrainerConfs.model_validate({"zoom_augment": {"p_zoom": 1.0, "max_factor": 1.5}}))
    assert (config.p_zoom, config.max_zoom) == (1.0, 1.5)
    assert augment_config(TrainerConfs()).p_zoom == 0.0, "off by default: the released recipe has no zoom"
    only_zoom = A.AugmentConfig(p_flip=0, p_rotate=0, p_color=0, p_hed=0, p_equalize=0, p_grayscale=0, p_jpeg=0,
                                p_blur=0, p_zoom=1.0, max_zoom=1.5)
    square = np.zeros((64, 64, 3), np.uint8)
    square[24:40, 24:40] = 255
    areas = {int((A.Augmenter(only_zoom)(square, np.random.default_rng(s))[..., 0] > 127).sum()) for s in range(8)}
    assert len(areas) > 1, "each draw zooms by its own factor"
    off, barely_on = np.random.default_rng(3), np.random.default_rng(3)
    A.Augmenter(A.AugmentConfig(p_zoom=0.0))(IMAGE, off)
    A.Augmenter(A.AugmentConfig(p_zoom=1e-12))(IMAGE, barely_on)
    assert off.random() != barely_on.random(), "zoom at any chance draws once more"
    assert np.random.default_rng(3).random() != off.random()


@pytest.mark.parametrize("section", [{"p_zoom": 1.5}, {"max_factor": 0.9}, {"max_factor": 3}, {"factor": 1.2}, {"p_zoom": "often"}])
def test_bad_zoom_augmentation_settings_are_rejected(section: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="zoom_augment"):
        TrainerConfs.model_validate({"zoom_augment": section})
