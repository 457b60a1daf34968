"""MixStyle: style statistics mixed between images while training, identity at inference and on every runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def _styled_batch() -> np.ndarray:
    """Six feature maps sharing content, each with its own channel means and spreads (its 'style')."""
    rng = np.random.default_rng(1)
    content = rng.normal(size=(1, 6, 6, 4))
    scale = rng.uniform(0.5, 3.0, (6, 1, 1, 4))
    shift = rng.uniform(-5.0, 5.0, (6, 1, 1, 4))
    return (content * scale + shift).astype(np.float32)


def test_training_moves_each_image_style_between_the_batch_styles_and_keeps_its_content() -> None:
    from trainer.layers import MixStyle

    x = _styled_batch()
    out = np.asarray(MixStyle(probability=1.0, alpha=0.5, seed=3)(x, training=True))
    means, out_means = x.mean(axis=(1, 2)), out.mean(axis=(1, 2))
    assert not np.allclose(out_means, means, atol=1e-3)
    assert np.all(out_means >= means.min(axis=0) - 1e-4) and np.all(out_means <= means.max(axis=0) + 1e-4)

    def normalised(a: np.ndarray) -> np.ndarray:
        return (a - a.mean(axis=(1, 2), keepdims=True)) / a.std(axis=(1, 2), keepdims=True)

    np.testing.assert_allclose(normalised(out), normalised(x), atol=1e-3)


@pytest.mark.parametrize("probability, training", [(1.0, False), (1.0, None), (0.0, True)])
def test_identity_at_inference_and_when_off(probability: float, training: bool | None) -> None:
    from trainer.layers import MixStyle

    x = _styled_batch()
    np.testing.assert_array_equal(np.asarray(MixStyle(probability, seed=3)(x, training=training)), x)


def test_model_with_mix_style_trains_saves_and_exports_to_every_runtime(tmp_path: Path, runtimes_match_keras) -> None:  # type: ignore[no-untyped-def]
    import keras

    from trainer.model import ModelSpec, build_core, build_model

    spec = ModelSpec(n_classes=3, image_size=64, internal_size=64, width=4, mix_style=1.0)
    model = build_model(spec)
    names = {layer.name for layer in model.get_layer("core").layers}
    assert {"stem_mix_style", "block1_mix_style", "block2_mix_style"} <= names
    assert "block1_mix_style" not in {layer.name for layer in build_model(ModelSpec(n_classes=3, image_size=64,
                                                                                     internal_size=64, width=4)).get_layer("core").layers}
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (8, 64, 64, 3)).astype(np.uint8)
    core = build_core(spec)
    core.compile("adam", "sparse_categorical_crossentropy")
    core.fit(images[:, :40, :40].astype(np.float32), np.arange(8) % 3, epochs=1, verbose=0)  # crops, as in training
    model.save(tmp_path / "model.keras")
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(reloaded.predict(images.astype(np.float32), verbose=0),
                               model.predict(images.astype(np.float32), verbose=0), atol=1e-6)
    runtimes_match_keras(model, images, tmp_path / "export", 64)


@pytest.mark.parametrize("value", [1.5, -0.1, "often"])
def test_a_bad_mix_style_setting_is_a_clear_error(cli, tmp_path: Path, confs_writer, synthetic_data: Path, value: object) -> None:  # type: ignore[no-untyped-def]
    confs = confs_writer(tmp_path / "confs.json", synthetic_data, tmp_path)
    raw = json.loads(confs.read_text())
    raw["trainer"]["mix_style"] = value
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw))
    result = cli("--confs", str(bad), "train", "--data", str(synthetic_data))
    assert result.returncode != 0 and "Traceback" not in result.stderr + result.stdout
    assert "error:" in result.stderr and "mix_style" in result.stderr
    assert not any((tmp_path / "runs").glob("*/model.keras"))
