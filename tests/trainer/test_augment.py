"""Each augmentation keeps shape, dtype and range, and random augmentation is reproducible from a seed."""

from __future__ import annotations

import numpy as np
import pytest

from trainer import augment as A

RNG = np.random.default_rng(5)
IMAGE = np.clip(RNG.normal(170, 40, (48, 64, 3)), 0, 255).astype(np.uint8)

TRANSFORMS = {
    "grayscale": A.grayscale,
    "equalize": A.equalize_histogram,
    "flip_h": lambda i: A.flip(i, True),
    "flip_v": lambda i: A.flip(i, False),
    "blur": lambda i: A.gaussian_blur(i, 1.0),
    "rotate": lambda i: A.rotate(i, 30),
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
