"""The release's split: a final fit of the block split, and halves of held-out blocks for cross-calibration."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from contracts.confs import TrainerConfs
from trainer.data import ScannedDataset
from trainer.split import SplitIndex, UnionFind, block_split


def final_fit_index(index: SplitIndex) -> SplitIndex:
    """The release's final fit: train and test blocks train together; the validation blocks are also what is reported."""
    held_out = index.split["validation"]
    train = np.union1d(index.split["train"], index.split["test"]).astype(np.int64)
    return replace(index, split={"train": train, "validation": held_out, "test": held_out})


def component_halves(index: SplitIndex, indices: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two halves of `indices`, class by class, that never part a block or a near-duplicate group."""
    inside = {int(i) for i in indices}
    uf = UnionFind()
    for i in inside:
        uf.find(index.block_of[i])
    for group in index.groups:
        members = [g for g in group if g in inside]
        for other in members[1:]:
            uf.union(index.block_of[members[0]], index.block_of[other])
    comps: dict[str, list[int]] = {}
    for i in sorted(inside):
        comps.setdefault(str(uf.find(index.block_of[i])), []).append(i)
    by_class: dict[str, list[str]] = {}
    for comp in sorted(comps):
        by_class.setdefault(comp.split("/")[0], []).append(comp)
    rng = np.random.default_rng(seed)
    halves: tuple[list[int], list[int]] = ([], [])
    for label in sorted(by_class):
        ids = by_class[label]
        rng.shuffle(ids)  # type: ignore[arg-type]
        filled = [0, 0]
        for comp in sorted(ids, key=lambda c: -len(comps[c])):  # largest first; equal sizes stay shuffled
            side = 0 if filled[0] <= filled[1] else 1
            halves[side].extend(comps[comp])
            filled[side] += len(comps[comp])
    return np.array(sorted(halves[0]), dtype=np.int64), np.array(sorted(halves[1]), dtype=np.int64)


def release_index(dataset: ScannedDataset, confs: TrainerConfs, final: bool | None = None) -> SplitIndex:
    """The split a release trains and reports on: the block split, or its final fit (confs.final_fit unless `final`)."""
    s = confs.split
    index = block_split(dataset, s.validation_fraction, s.test_fraction, s.block_size, confs.seed)
    return final_fit_index(index) if (confs.final_fit if final is None else final) else index
