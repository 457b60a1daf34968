"""Training loop: block split, on-the-fly augmentation, class weights, early stopping, run folder."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from contracts.confs import TrainerConfs
from trainer.augment import Augmenter, mask_scale_bar
from trainer.config import augment_config, model_spec, save_resolved
from trainer.data import ScannedDataset
from trainer.split import SplitIndex

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """A trained model with its history and timing."""

    model: keras.Model
    history: dict[str, list[float]]
    seconds: float
    best_epoch: int
    stopped_by: str


class AugmentedEpochs:
    """Yields augmented uint8 batches forever; the next epoch is prepared in a background thread."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        augmenter: Augmenter,
        seed: int,
        crop: int = 0,
        mask: bool = False,
    ) -> None:
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.augmenter, self.seed, self.crop, self.mask = augmenter, seed, crop, mask
        self.size = crop if 0 < crop < images.shape[1] else images.shape[1]
        self.steps = int(np.ceil(len(images) / batch_size))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="augment")

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.images))
        out = np.empty((len(order), self.size, self.size, 3), np.uint8)
        for k, i in enumerate(order):
            img = self.augmenter(self.images[i], rng)
            # The mask goes on before cropping: the deployed model masks the full image's corner.
            img = mask_scale_bar(img) if self.mask else img
            top, left = (int(v) for v in rng.integers(0, img.shape[0] - self.size + 1, 2))
            out[k] = img[top : top + self.size, left : left + self.size]
        return out, self.labels[order]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        epoch = 0
        upcoming: Future = self._pool.submit(self._epoch, epoch)
        while True:
            images, labels = upcoming.result()
            epoch += 1
            upcoming = self._pool.submit(self._epoch, epoch)
            for i in range(self.steps):
                part = slice(i * self.batch_size, (i + 1) * self.batch_size)
                yield images[part], labels[part]

    def dataset(self, class_weight: np.ndarray) -> Any:
        """What Keras fits on: float pixels 0-255, labels, and each sample's class weight.

        A tf.data view on TensorFlow, a plain generator on other backends (PyTorch on an accelerator box).
        Weights travel as sample weights because Keras takes `class_weight` for neither with a generator.
        """
        weight = np.asarray(class_weight, np.float32)
        if keras.backend.backend() != "tensorflow":
            return ((images.astype(np.float32), labels, weight[labels]) for images, labels in self)
        import tensorflow as tf  # only this backend has tf.data

        spec = (
            tf.TensorSpec((None, self.size, self.size, 3), tf.uint8),
            tf.TensorSpec((None,), tf.int64),
        )
        ds = tf.data.Dataset.from_generator(lambda: iter(self), output_signature=spec)
        table = tf.constant(weight)
        return ds.map(lambda x, y: (tf.cast(x, tf.float32), y, tf.gather(table, y))).prefetch(2)


class FittedCosine(keras.callbacks.Callback):
    """Cosine learning rate over the epochs that fit the time budget, measured after the first epoch.

    On a shared machine a fixed schedule would be cut off at a high learning rate; this one always
    anneals, and stops training when the planned epochs (or the budget) are used up.
    """

    def __init__(self, peak: float, epochs: int, seconds: float, floor: float = 0.02) -> None:
        super().__init__()
        self.peak, self.epochs, self.planned, self.seconds, self.floor = peak, epochs, epochs, seconds, floor
        self.start, self.first, self.hit = time.monotonic(), 0.0, False

    def rate(self, epoch: int) -> float:
        """Learning rate of an epoch: a short warm-up, then cosine decay to floor * peak."""
        if epoch == 0:
            return self.peak * 0.3
        progress = min((epoch - 1) / max(self.planned - 2, 1), 1.0)
        return self.peak * (self.floor + (1 - self.floor) * 0.5 * (1 + np.cos(np.pi * progress)))

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Set this epoch's learning rate."""
        self.model.optimizer.learning_rate.assign(self.rate(epoch))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Re-plan from the measured pace; stop when the plan or the budget is used up."""
        now = time.monotonic()
        if epoch == 0:
            self.first = now - self.start  # includes tracing and the first augmentation pass
        elapsed = now - self.start
        per_epoch = (elapsed - self.first) / epoch if epoch else self.first
        fit = epoch + 1 + int((self.seconds - elapsed) / max(per_epoch, 1e-6))
        planned = min(self.epochs, max(fit, epoch + 1))
        if planned != self.planned:
            log.info("time budget: planning %d epochs at %.0f s each", planned, per_epoch)
            self.hit = planned < self.epochs
        self.planned = planned
        if epoch + 1 >= self.planned:
            self.model.stop_training = True


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the lowest validation loss, whatever stops training."""

    def __init__(self) -> None:
        super().__init__()
        self.best, self.best_epoch, self.weights = np.inf, -1, None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Remember this epoch if it is the best so far."""
        loss = float((logs or {}).get("val_loss", np.inf))
        if loss < self.best:
            self.best, self.best_epoch, self.weights = loss, epoch, self.model.get_weights()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Restore the best epoch."""
        if self.weights is not None:
            self.model.set_weights(self.weights)


def training_backend() -> str:
    """What trains: the Keras backend, its version and the device it computes on."""
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        return f"Keras {keras.__version__} on PyTorch {torch.__version__}, " + (
            f"CUDA {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "CPU"
        )
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"Keras {keras.__version__} on TensorFlow {tf.__version__}, " + (f"{len(gpus)} GPU" if gpus else "CPU")
    return f"Keras {keras.__version__} on {backend}"


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency weight per class so the smaller Benign class counts as much as the others."""
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    return np.array([len(labels) / (n_classes * c) if c else 0.0 for c in counts])


def train_model(
    confs: TrainerConfs,
    dataset: ScannedDataset,
    index: SplitIndex,
    augmenter: Augmenter | None = None,
    verbose: int = 1,
    weights: Path | None = None,
) -> TrainResult:
    """Fit the configured model on the train split, validating on the validation split."""
    from trainer.model import accepts_crops, build_model

    keras.utils.set_random_seed(confs.seed)
    labels = dataset.labels
    train_idx, val_idx = index.split["train"], index.split["validation"]
    n_classes = len(dataset.classes)
    spec = model_spec(confs, n_classes)
    full = build_model(spec, weights)
    # The core (everything after the scale-bar mask) trains on masked crops; the wrapper is what ships.
    model = full.get_layer("core")
    crop = confs.train_crop if accepts_crops(spec) else 0
    batches = AugmentedEpochs(
        dataset.images[train_idx], labels[train_idx], confs.batch_size, augmenter or Augmenter(augment_config(confs)), confs.seed,
        crop=crop, mask=spec.mask_scale_bar,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(confs.learning_rate, weight_decay=1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    budget, best = FittedCosine(confs.learning_rate, confs.epochs, confs.max_train_minutes * 60), BestWeights()
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=confs.patience)
    # A final fit keeps its last epoch: the validation blocks choose nothing, so what is reported on them stays unbiased.
    callbacks = [budget] if confs.final_fit else [budget, best, stopper]
    val_images = dataset.images[val_idx]
    if spec.mask_scale_bar:
        val_images = np.stack([mask_scale_bar(img) for img in val_images]) if len(val_images) else val_images
    validation = (val_images.astype(np.float32), labels[val_idx])
    start = time.monotonic()
    history = model.fit(
        batches.dataset(class_weights(labels[train_idx], n_classes)),
        steps_per_epoch=batches.steps,
        epochs=confs.epochs,
        validation_data=validation,
        callbacks=callbacks,
        verbose=verbose,
    )
    seconds = time.monotonic() - start
    stopped_by = "time budget" if budget.hit else "early stopping" if stopper.stopped_epoch else "epochs"
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    kept = len(hist.get("loss", [])) if confs.final_fit else best.best_epoch + 1
    log.info("trained %d epochs in %.0f s (kept epoch %d, stopped by %s)", len(hist.get("loss", [])), seconds, kept, stopped_by)
    return TrainResult(full, hist, seconds, kept, stopped_by)


def save_run(run_dir: Path, confs: TrainerConfs, result: TrainResult, extra: dict[str, Any]) -> None:
    """Write the resolved config, history and weights into the run folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    save_resolved(confs, run_dir / "config.json", extra)
    summary = {"seconds": result.seconds, "best_epoch": result.best_epoch, "stopped_by": result.stopped_by}
    (run_dir / "history.json").write_text(json.dumps({**summary, "history": result.history}, indent=2))
    result.model.save(run_dir / "model.keras")
