"""Scanning and decoding a folder-per-class image dataset into memory."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from trainer.errors import TrainerError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
ACCEPTED_MODES = {"RGB", "RGBA", "L", "P"}
MIN_SIDE = 32
_NUMBER = re.compile(r"(\d+)$")


@dataclass(frozen=True)
class ImageRecord:
    """One decodable image: where it is, its class, its file number and content hash."""

    path: Path
    label: str
    number: int
    sha256: str


@dataclass(frozen=True)
class SkippedFile:
    """A file that was not used, with the reason."""

    path: Path
    reason: str


@dataclass
class ScannedDataset:
    """Decoded images (N, size, size, 3 uint8 RGB) with their records, classes and skipped files."""

    classes: list[str]
    records: list[ImageRecord]
    images: np.ndarray
    skipped: list[SkippedFile]

    @property
    def labels(self) -> np.ndarray:
        """Class index of every image."""
        lookup = {name: i for i, name in enumerate(self.classes)}
        return np.array([lookup[r.label] for r in self.records], dtype=np.int64)


def file_number(path: Path, fallback: int) -> int:
    """Trailing number of a file name (WBC-Benign-042.jpg -> 42), or the fallback."""
    match = _NUMBER.search(path.stem)
    return int(match.group(1)) if match else fallback


def decode_image(data: bytes, image_size: int) -> tuple[np.ndarray | None, str]:
    """Decode bytes into a size x size RGB uint8 array, or None and the reason it was refused."""
    import io

    try:
        with Image.open(io.BytesIO(data)) as img:
            mode = img.mode
            if mode not in ACCEPTED_MODES:
                return None, f"wrong mode {mode}"
            if min(img.size) < MIN_SIDE:
                return None, f"too small {img.size[0]}x{img.size[1]}"
            img.load()
            rgb = img.convert("RGB")
    except UnidentifiedImageError:
        return None, "not an image"
    except (OSError, SyntaxError, ValueError) as exc:
        return None, f"corrupt ({exc})"
    if rgb.size != (image_size, image_size):
        rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(rgb, dtype=np.uint8), ""


def list_class_dirs(data_dir: Path) -> list[Path]:
    """Class folders of a dataset, sorted by name; raises TrainerError when unusable."""
    if not data_dir.exists():
        raise TrainerError(f"data directory not found: {data_dir}")
    if not data_dir.is_dir():
        raise TrainerError(f"data path is not a directory: {data_dir}")
    dirs = sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise TrainerError(f"no class folders in {data_dir} (expected one folder per class)")
    return dirs


def _files(folder: Path) -> Iterable[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def scan_dataset(
    data_dir: Path | str,
    image_size: int = 224,
    progress: Callable[[Iterable[Path]], Iterable[Path]] | None = None,
    min_classes: int = 2,
) -> ScannedDataset:
    """Decode every file under data_dir/<class>/ and report what was skipped and why."""
    root = Path(data_dir)
    class_dirs = list_class_dirs(root)
    records: list[ImageRecord] = []
    arrays: list[np.ndarray] = []
    skipped: list[SkippedFile] = []
    for folder in class_dirs:
        files = list(_files(folder))
        for position, path in enumerate(progress(files) if progress else files):
            if path.suffix.lower() not in IMAGE_SUFFIXES and path.suffix.lower() != "":
                skipped.append(SkippedFile(path, f"not an image (suffix {path.suffix})"))
                continue
            data = path.read_bytes()
            array, reason = decode_image(data, image_size)
            if array is None:
                skipped.append(SkippedFile(path, reason))
                continue
            digest = hashlib.sha256(data).hexdigest()
            records.append(ImageRecord(path, folder.name, file_number(path, position), digest))
            arrays.append(array)
    classes = sorted({r.label for r in records})
    for s in skipped:
        log.warning("skipped %s: %s", s.path, s.reason)
    if len(classes) < min_classes:
        found = ", ".join(classes) or "none"
        raise TrainerError(
            f"{root} has usable images in {len(classes)} class folder(s) ({found}); "
            f"need at least {min_classes} classes"
        )
    images = np.stack(arrays) if arrays else np.zeros((0, image_size, image_size, 3), np.uint8)
    return ScannedDataset(classes, records, images, skipped)
