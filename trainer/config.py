"""The trainer's settings: the `trainer` section of confs.json plus command-line overrides."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.confs import ConfsError, TrainerConfs, load_confs
from trainer.errors import TrainerError

if TYPE_CHECKING:
    from trainer.augment import AugmentConfig
    from trainer.model import ModelSpec

log = logging.getLogger(__name__)


def load_trainer_confs(path: Path | str, overrides: dict[str, Any] | None = None) -> TrainerConfs:
    """Read confs.json's trainer section and apply non-None overrides (validated again)."""
    try:
        confs = load_confs(path).trainer
    except ConfsError as exc:
        raise TrainerError(f"invalid configuration: {exc}") from None
    changes = {k: v for k, v in (overrides or {}).items() if v is not None}
    if not changes:
        return confs
    try:
        return TrainerConfs.model_validate({**confs.model_dump(), **changes})
    except ValueError as exc:
        raise TrainerError(f"invalid trainer setting: {exc}") from None


def augment_config(confs: TrainerConfs) -> AugmentConfig:
    """The training augmentation, with the configured stain jitter, blur and zoom."""
    from trainer.augment import AugmentConfig

    blur, zoom = confs.blur_augment, confs.zoom_augment
    return AugmentConfig(p_hed=confs.stain_augment.p_hed, hed_sigma=confs.stain_augment.hed_sigma,
                         p_blur=blur.p_blur, blur_sigma=(0.3, blur.max_sigma),
                         p_zoom=zoom.p_zoom, max_zoom=zoom.max_factor)


def model_spec(confs: TrainerConfs, n_classes: int) -> ModelSpec:
    """The architecture described by the trainer settings."""
    from trainer.model import ModelSpec  # imports Keras: only when a model is built

    return ModelSpec(
        name=confs.model,
        n_classes=n_classes,
        image_size=confs.image_size,
        internal_size=confs.internal_size,
        grayscale=confs.grayscale,
        mask_scale_bar=confs.mask_scale_bar,
        width=confs.width,
        dropout=confs.dropout,
        residual=confs.residual,
        squeeze_excite=confs.squeeze_excite,
        mix_style=confs.mix_style,
    )


def save_resolved(confs: TrainerConfs, path: Path, extra: dict[str, Any] | None = None) -> None:
    """Write the settings actually used (and anything else worth keeping) beside the run."""
    path.write_text(json.dumps({"trainer": confs.model_dump(mode="json"), **(extra or {})}, indent=2))
