"""Deduplication, near-duplicate grouping, block splitting and grouped k-fold assignment of a scanned dataset."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import cv2
import numpy as np

from trainer.data import ImageRecord, ScannedDataset
from trainer.errors import TrainerError

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
_POPCOUNT = np.array([(i).bit_count() for i in range(256)], dtype=np.uint16)


@dataclass
class SplitIndex:
    """Which kept image goes to which split, and why images were dropped or grouped."""

    keep: np.ndarray  # indices into the scanned dataset, after exact-duplicate removal
    split: dict[str, np.ndarray]  # split name -> indices into the scanned dataset
    duplicates: list[tuple[int, int]]  # (dropped, kept) exact duplicates
    conflicts: list[int]  # identical bytes under different classes: all copies dropped
    groups: list[list[int]]  # near-duplicate groups (size >= 2)
    block_of: dict[int, str] = field(default_factory=dict)  # index -> block id


class UnionFind:
    """Disjoint sets over hashable keys."""

    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, key: object) -> object:
        """Root of key's set."""
        self.parent.setdefault(key, key)
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def union(self, a: object, b: object) -> None:
        """Merge the sets of a and b."""
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb, key=str)] = min(ra, rb, key=str)


def dhash_bits(image: np.ndarray, side: int = 16) -> np.ndarray:
    """256-bit difference hash of an RGB image, packed into 32 bytes."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray, (side + 1, side), interpolation=cv2.INTER_AREA).astype(np.int16)
    return np.packbits((small[:, 1:] > small[:, :-1]).ravel())


def thumbnail(image: np.ndarray, side: int = 32) -> np.ndarray:
    """Small grayscale float thumbnail used to confirm near duplicates."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)


def exact_duplicates(records: list[ImageRecord]) -> tuple[list[int], list[tuple[int, int]], list[int]]:
    """Indices to keep, (dropped, kept) duplicate pairs, and indices dropped for conflicting labels."""
    first: dict[str, int] = {}
    labels: dict[str, set[str]] = {}
    for i, rec in enumerate(records):
        labels.setdefault(rec.sha256, set()).add(rec.label)
    keep: list[int] = []
    dups: list[tuple[int, int]] = []
    conflicts: list[int] = []
    for i, rec in enumerate(records):
        if len(labels[rec.sha256]) > 1:
            conflicts.append(i)
        elif rec.sha256 in first:
            dups.append((i, first[rec.sha256]))
        else:
            first[rec.sha256] = i
            keep.append(i)
    return keep, dups, conflicts


def near_duplicate_pairs(
    images: np.ndarray, indices: list[int], max_hamming: int = 12, max_mse: float = 100.0
) -> list[tuple[int, int]]:
    """Pairs of images whose dHash differs by at most max_hamming bits and whose thumbnails agree."""
    if len(indices) < 2:
        return []
    hashes = np.stack([dhash_bits(images[i]) for i in indices])
    thumbs = np.stack([thumbnail(images[i]) for i in indices])
    pairs: list[tuple[int, int]] = []
    for a in range(len(indices) - 1):
        distance = _POPCOUNT[np.bitwise_xor(hashes[a + 1 :], hashes[a])].sum(axis=1)
        for offset in np.flatnonzero(distance <= max_hamming):
            b = a + 1 + int(offset)
            if float(np.mean((thumbs[a] - thumbs[b]) ** 2)) < max_mse:
                pairs.append((indices[a], indices[b]))
    return pairs


def _groups(pairs: list[tuple[int, int]]) -> list[list[int]]:
    uf = UnionFind()
    for a, b in pairs:
        uf.union(a, b)
    members: dict[object, list[int]] = {}
    for key in list(uf.parent):
        members.setdefault(uf.find(key), []).append(int(key))  # type: ignore[arg-type]
    return sorted(sorted(m) for m in members.values())


@dataclass
class Components:
    """Kept images grouped into components: blocks merged through near-duplicate groups."""

    keep: list[int]
    duplicates: list[tuple[int, int]]
    conflicts: list[int]
    groups: list[list[int]]
    block_of: dict[int, str]
    members: dict[str, list[int]]  # component id (its root block) -> indices, ids in sorted order
    label_of: dict[str, str]  # component id -> majority class

    def per_class(self) -> dict[str, list[str]]:
        """Component ids of each class, in sorted id order."""
        out: dict[str, list[str]] = {}
        for comp in self.members:
            out.setdefault(self.label_of[comp], []).append(comp)
        return out


def build_components(dataset: ScannedDataset, block_size: int) -> Components:
    """Drop exact duplicates, group near duplicates and merge the blocks they touch into components."""
    records = dataset.records
    keep, dups, conflicts = exact_duplicates(records)
    groups = _groups(near_duplicate_pairs(dataset.images, keep))
    block_of = {i: f"{records[i].label}/{records[i].number // max(block_size, 1)}" for i in keep}
    uf = UnionFind()
    for i in keep:
        uf.find(block_of[i])
    for group in groups:
        for other in group[1:]:
            uf.union(block_of[group[0]], block_of[other])
    found: dict[str, list[int]] = {}
    for i in keep:
        found.setdefault(str(uf.find(block_of[i])), []).append(i)
    members = {comp: found[comp] for comp in sorted(found)}

    def majority(idx: list[int]) -> str:
        return max({records[i].label for i in idx}, key=lambda c: sum(records[i].label == c for i in idx))

    label_of = {comp: majority(idx) for comp, idx in members.items()}
    return Components(keep, dups, conflicts, groups, block_of, members, label_of)


def block_split(
    dataset: ScannedDataset,
    validation_fraction: float,
    test_fraction: float,
    block_size: int,
    seed: int,
) -> SplitIndex:
    """Split by blocks of consecutive file numbers per class; merged blocks never straddle splits."""
    records = dataset.records
    comps = build_components(dataset, block_size)
    rng = np.random.default_rng(seed)
    order = list(comps.members)
    rng.shuffle(order)  # type: ignore[arg-type]
    per_class_total: dict[str, int] = {}
    for i in comps.keep:
        per_class_total[records[i].label] = per_class_total.get(records[i].label, 0) + 1
    n_components = {label: len(ids) for label, ids in comps.per_class().items()}
    filled: dict[tuple[str, str], int] = {}
    assignment: dict[str, list[int]] = {name: [] for name in SPLITS}
    for comp in order:
        members = comps.members[comp]
        label = comps.label_of[comp]
        total = per_class_total[label]
        targets = {"test": test_fraction * total, "validation": validation_fraction * total}
        chosen = "train"
        for name in ("test", "validation"):
            filled_now = filled.get((label, name), 0)
            # Small classes still get one block in each held-out split when they have enough blocks.
            if filled_now + len(members) / 2 <= targets[name] or (filled_now == 0 and n_components[label] >= 3):
                chosen = name
                break
        filled[(label, chosen)] = filled.get((label, chosen), 0) + len(members)
        assignment[chosen].extend(members)
    split = {name: np.array(sorted(v), dtype=np.int64) for name, v in assignment.items()}
    log.info("split sizes: %s", {k: len(v) for k, v in split.items()})
    return SplitIndex(
        np.array(comps.keep, dtype=np.int64), split, comps.duplicates, comps.conflicts, comps.groups, comps.block_of
    )


@dataclass
class Folds:
    """Grouped, class-stratified folds: every kept image in exactly one fold, no component in two."""

    components: Components
    fold_of: dict[str, int]  # component id -> fold
    folds: list[np.ndarray]  # fold -> sorted indices into the scanned dataset


def grouped_folds(dataset: ScannedDataset, k: int, block_size: int, seed: int) -> Folds:
    """Deal whole components into k folds, class by class, so each fold holds every class in proportion."""
    if k < 2:
        raise TrainerError(f"--folds must be at least 2 (got {k})")
    comps = build_components(dataset, block_size)
    per_class = comps.per_class()
    counts = {c: len(per_class.get(c, [])) for c in dataset.classes}
    fewest = min(counts, key=lambda c: counts[c])
    if k > counts[fewest]:
        raise TrainerError(
            f"{k} folds need at least {k} components (blocks of {block_size} after merging near duplicates) "
            f"in every class; {fewest} has {counts[fewest]}"
        )
    rng = np.random.default_rng(seed)
    totals = np.zeros(k)
    fold_of: dict[str, int] = {}
    for label in sorted(per_class):
        ids = list(per_class[label])
        rng.shuffle(ids)  # type: ignore[arg-type]
        ids.sort(key=lambda c: -len(comps.members[c]))  # largest first; equal sizes stay shuffled
        filled, tiebreak = np.zeros(k), rng.permutation(k)
        for comp in ids:
            # Fewest images of this class first, then fewest overall, so folds balance both ways.
            fold = min(range(k), key=lambda f: (filled[f], totals[f], tiebreak[f]))
            fold_of[comp] = fold
            filled[fold] += len(comps.members[comp])
            totals[fold] += len(comps.members[comp])
    folds: list[list[int]] = [[] for _ in range(k)]
    for comp, fold in fold_of.items():
        folds[fold].extend(comps.members[comp])
    log.info("fold sizes: %s", [len(f) for f in folds])
    return Folds(comps, fold_of, [np.array(sorted(f), dtype=np.int64) for f in folds])


def fold_split(folds: Folds, fold: int, validation_fraction: float, seed: int) -> SplitIndex:
    """Fold `fold` as test, a class-stratified share of the other components as validation, the rest as train."""
    comps = folds.components
    rng = np.random.default_rng([seed, fold])
    validation: list[int] = []
    train: list[int] = []
    rest: dict[str, list[str]] = {}
    for comp, where in folds.fold_of.items():
        if where != fold:
            rest.setdefault(comps.label_of[comp], []).append(comp)
    for label in sorted(rest):
        ids = sorted(rest[label])
        rng.shuffle(ids)  # type: ignore[arg-type]
        target = validation_fraction * sum(len(comps.members[c]) for c in ids)
        filled = 0
        for n, comp in enumerate(ids):
            members = comps.members[comp]
            # The last component of a class always trains, so training sees every class.
            if n < len(ids) - 1 and (filled == 0 or filled + len(members) / 2 <= target):
                validation.extend(members)
                filled += len(members)
            else:
                train.extend(members)
    if not validation:
        raise TrainerError(f"fold {fold} leaves no component for validation: use fewer folds or a smaller block size")
    split = {
        "train": np.array(sorted(train), dtype=np.int64),
        "validation": np.array(sorted(validation), dtype=np.int64),
        "test": folds.folds[fold],
    }
    keep = np.array(comps.keep, dtype=np.int64)
    return SplitIndex(keep, split, comps.duplicates, comps.conflicts, comps.groups, comps.block_of)


def split_digest(dataset: ScannedDataset, index: SplitIndex) -> str:
    """sha256 over the (split, class, content hash) lines: identifies the training data."""
    lines = sorted(
        f"{name}\t{dataset.records[i].label}\t{dataset.records[i].sha256}"
        for name, idx in index.split.items()
        for i in idx
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
