"""Model builders: a small CNN (default), MobileNetV2 and InceptionV3, with preprocessing inside."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import keras
from keras import layers

from trainer.errors import TrainerError
from trainer.layers import ImageStandardize, MixStyle, ScaleBarMask, ToGray

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
MODELS = ("small_cnn", "mobilenet_v2", "inception_v3")


@dataclass(frozen=True)
class ModelSpec:
    """What to build: architecture, input size, internal working size and input handling."""

    name: str = "small_cnn"
    n_classes: int = 4
    image_size: int = 224
    internal_size: int = 224
    grayscale: bool = False
    mask_scale_bar: bool = True
    width: int = 16
    dropout: float = 0.3
    residual: bool = False
    squeeze_excite: bool = False
    mix_style: float = 0.0


def _preprocess(inputs: keras.KerasTensor, spec: ModelSpec) -> keras.KerasTensor:
    """Raw 0-255 RGB (any size) to what the backbone sees: grey if asked, downsized, standardised."""
    x = inputs
    if spec.grayscale:
        x = ToGray(name="to_gray")(x)
    factor = spec.image_size // spec.internal_size
    if factor >= 2 and spec.image_size == factor * spec.internal_size:
        # Average pooling is an exact area downscale, works on crops, and converts to every runtime.
        x = layers.AveragePooling2D(pool_size=factor, name="downscale")(x)
    elif spec.internal_size != spec.image_size:
        x = layers.Resizing(spec.internal_size, spec.internal_size, name="downscale")(x)
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(x)
    return ImageStandardize(name="standardize")(x)


def _conv(x: keras.KerasTensor, filters: int, name: str, strides: int = 1) -> keras.KerasTensor:
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    # A short memory keeps inference statistics in step with fast-changing weights (stable validation).
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _squeeze_excite(x: keras.KerasTensor, name: str) -> keras.KerasTensor:
    """Reweight channels by a gate computed from their global average (Hu et al. 2018), reduction 4."""
    channels = int(x.shape[-1])
    gate = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_pool")(x)
    gate = layers.Dense(max(channels // 4, 4), activation="relu", name=f"{name}_se_reduce")(gate)
    gate = layers.Dense(channels, activation="sigmoid", name=f"{name}_se_expand")(gate)
    return layers.Multiply(name=f"{name}_se")([x, gate])


def _pair(x: keras.KerasTensor, filters: int, name: str, spec: ModelSpec) -> keras.KerasTensor:
    """Two 3x3 convolutions; with `residual` the second adds to the first, with `squeeze_excite` it is gated."""
    first = _conv(x, filters, f"{name}a")
    second = _conv(first, filters, f"{name}b")
    if spec.squeeze_excite:
        second = _squeeze_excite(second, name)
    return layers.Add(name=f"{name}_add")([first, second]) if spec.residual else second


def _mix_style(x: keras.KerasTensor, name: str, spec: ModelSpec) -> keras.KerasTensor:
    """Style mixing after an early stage when the spec asks for it (training only; identity at inference)."""
    return MixStyle(spec.mix_style, name=f"{name}_mix_style")(x) if spec.mix_style > 0 else x


def _small_cnn(x: keras.KerasTensor, spec: ModelSpec) -> keras.KerasTensor:
    # A strided stem keeps the costly full-resolution layers to one; depth goes where maps are small.
    w = spec.width
    x = _mix_style(_conv(x, w, "stem", strides=2), "stem", spec)
    x = _conv(x, w * 2, "block1")
    x = _mix_style(layers.MaxPooling2D(2, name="block1_pool")(x), "block1", spec)
    x = _conv(x, w * 4, "block2")
    x = _mix_style(layers.MaxPooling2D(2, name="block2_pool")(x), "block2", spec)
    x = _pair(x, w * 6, "block3", spec)
    x = layers.MaxPooling2D(2, name="block3_pool")(x)
    x = _pair(x, w * 8, "block4", spec)
    return layers.GlobalAveragePooling2D(name="pool")(x)


def _application(x: keras.KerasTensor, spec: ModelSpec, weights: Path | None) -> keras.KerasTensor:
    channels = 1 if spec.grayscale else 3
    shape = (spec.internal_size, spec.internal_size, channels)
    kwargs = {"include_top": False, "weights": str(weights) if weights else None, "input_shape": shape, "pooling": "avg"}
    if spec.name == "mobilenet_v2":
        backbone = keras.applications.MobileNetV2(**kwargs)
    else:
        if spec.internal_size < 75:
            raise TrainerError("inception_v3 needs an internal size of at least 75 pixels")
        backbone = keras.applications.InceptionV3(**kwargs)
    # Keras applications expect inputs in [-1, 1]; standardised pixels are close to that range.
    return backbone(x)


def accepts_crops(spec: ModelSpec) -> bool:
    """True when the core is fully convolutional at any input size (no fixed resize)."""
    factor = spec.image_size // spec.internal_size
    pooled = factor >= 2 and spec.image_size == factor * spec.internal_size
    return spec.name == "small_cnn" and (pooled or spec.internal_size == spec.image_size)


def build_core(spec: ModelSpec, weights: Path | None = None) -> keras.Model:
    """Everything after the scale-bar mask; takes float 0-255 RGB of any size (crops while training)."""
    if spec.name not in MODELS:
        raise TrainerError(f"unknown model {spec.name!r}; choose one of {', '.join(MODELS)}")
    if weights is not None and not Path(weights).is_file():
        raise TrainerError(f"weights file not found: {weights}")
    fixed = spec.name != "small_cnn" or not accepts_crops(spec)
    shape = (spec.image_size, spec.image_size, 3) if fixed else (None, None, 3)
    inputs = keras.Input(shape=shape, name="pixels")
    x = _preprocess(inputs, spec)
    x = _small_cnn(x, spec) if spec.name == "small_cnn" else _application(x, spec, weights)
    x = layers.Dropout(spec.dropout, name="dropout")(x)
    outputs = layers.Dense(spec.n_classes, activation="softmax", name=OUTPUT_NAME)(x)
    return keras.Model(inputs, outputs, name="core")


def wrap_core(core: keras.Model, spec: ModelSpec) -> keras.Model:
    """The deployable model: named raw-pixel input, scale-bar mask, then the core."""
    inputs = keras.Input(shape=(spec.image_size, spec.image_size, 3), name=INPUT_NAME)
    x = ScaleBarMask(name="scale_bar_mask")(inputs) if spec.mask_scale_bar else inputs
    return keras.Model(inputs, core(x), name=spec.name)


def build_model(spec: ModelSpec, weights: Path | None = None) -> keras.Model:
    """Build the classifier taking (N, size, size, 3) float pixels 0-255 RGB, giving softmax."""
    core = build_core(spec, weights)
    model = wrap_core(core, spec)
    if weights is not None and spec.name == "small_cnn":
        try:
            model.load_weights(weights)
        except Exception as exc:  # Keras raises several types for mismatched files
            raise TrainerError(f"cannot load weights from {weights}: {exc}") from exc
    log.info("built %s: %d parameters", spec.name, model.count_params())
    return model
