"""The release's final fit: train and test blocks train together, validation blocks set the OOD threshold and are reported on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from contracts.confs import TrainerConfs
from contracts.model_package import parse_public_key, read_manifest
from trainer.__main__ import main
from trainer.data import scan_dataset
from trainer.ood_report import cross_calibrated_flag_rate
from trainer.release_split import component_halves, final_fit_index, release_index
from trainer.split import block_split


def _index(data: Path):  # type: ignore[no-untyped-def]
    dataset = scan_dataset(data, 64)
    return dataset, block_split(dataset, 0.2, 0.2, 5, 1)


def test_final_fit_trains_on_train_and_test_blocks_and_reports_on_validation(synthetic_data: Path) -> None:
    dataset, index = _index(synthetic_data)
    final = final_fit_index(index)
    assert set(final.split["train"]) == set(index.split["train"]) | set(index.split["test"])
    assert np.array_equal(final.split["test"], index.split["validation"])
    assert np.array_equal(final.split["validation"], index.split["validation"])
    assert not set(final.split["train"]) & set(final.split["validation"])
    assert set(final.split["train"]) | set(final.split["validation"]) == set(index.keep)
    confs = TrainerConfs(data_dir=str(synthetic_data), image_size=64, seed=1, final_fit=True,
                         split={"validation_fraction": 0.2, "test_fraction": 0.2, "block_size": 5})
    assert {k: list(v) for k, v in release_index(dataset, confs).split.items()} == {k: list(v) for k, v in final.split.items()}
    plain = confs.model_copy(update={"final_fit": False})
    assert np.array_equal(release_index(dataset, plain).split["test"], index.split["test"])


def test_component_halves_never_part_a_block_or_a_near_duplicate_group(synthetic_data: Path) -> None:
    dataset, index = _index(synthetic_data)
    first, second = component_halves(index, index.keep, seed=3)
    assert not set(first) & set(second) and set(first) | set(second) == set(index.keep)
    side = {int(i): 0 for i in first} | {int(i): 1 for i in second}
    blocks: dict[str, set[int]] = {}
    for i, s in side.items():
        blocks.setdefault(index.block_of[i], set()).add(s)
    assert all(len(sides) == 1 for sides in blocks.values())
    for group in index.groups:
        assert len({side[i] for i in group if i in side}) == 1
    for label in range(len(dataset.classes)):
        counts = [int((dataset.labels[half] == label).sum()) for half in (first, second)]
        assert min(counts) > 0 and abs(counts[0] - counts[1]) <= 10  # blocks of 5, a merged pair at most 10
    again = component_halves(index, index.keep, seed=3)
    assert np.array_equal(again[0], first) and np.array_equal(again[1], second)


def test_cross_calibrated_rate_applies_each_halfs_threshold_to_the_other() -> None:
    rng = np.random.default_rng(0)
    low, high = rng.uniform(0, 1, 100), rng.uniform(10, 11, 100)
    scores = np.concatenate([low, high])
    halves = [np.arange(100), np.arange(100, 200)]
    none = np.zeros(200, bool)
    # Low half's threshold flags all of the high half; the high half's flags none of the low half.
    assert cross_calibrated_flag_rate(scores, none, halves, 0.99) == pytest.approx(0.5)
    gated = none.copy()
    gated[:10] = True  # the stain gate flags these whatever the threshold
    assert cross_calibrated_flag_rate(scores, gated, halves, 0.99) == pytest.approx((1.0 + 0.1) / 2)
    alike = rng.normal(size=4000)
    rate = cross_calibrated_flag_rate(alike, np.zeros(4000, bool), [np.arange(0, 4000, 2), np.arange(1, 4000, 2)], 0.99)
    assert 0.003 < rate < 0.02
    assert cross_calibrated_flag_rate(scores, none, [np.arange(200), np.arange(0)], 0.99) == 0.0


@pytest.fixture(scope="module")
def final_release(tmp_path_factory: pytest.TempPathFactory, synthetic_data: Path, confs_writer) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """A tiny final-fit run, packaged."""
    work = tmp_path_factory.mktemp("final-fit")
    confs = confs_writer(work / "confs.json", synthetic_data, work, epochs=3, patience=1, train_crop=48, final_fit=True)
    assert main(["--confs", str(confs), "keys", "--trust"]) == 0
    assert main(["--confs", str(confs), "train", "--quiet"]) == 0
    run = (work / "runs" / "latest").resolve()
    assert main(["--confs", str(confs), "package", "--run", str(run), "--version", "0.2.0"]) == 0
    return {"work": work, "confs": confs, "run": run, "package": work / "models" / "all-small-cnn-0.2.0.tar.gz"}


def test_final_fit_keeps_its_last_epoch_whatever_the_validation_loss(final_release: dict) -> None:  # type: ignore[type-arg]
    history = json.loads((final_release["run"] / "history.json").read_text())
    assert len(history["history"]["loss"]) == 3 and history["best_epoch"] == 3 and history["stopped_by"] == "epochs"


def test_final_fit_package_says_what_its_figures_are_measured_on(final_release: dict, synthetic_data: Path) -> None:  # type: ignore[type-arg]
    keys = [parse_public_key(k) for k in json.loads(final_release["confs"].read_text())["ota"]["trusted_public_keys"]]
    manifest = read_manifest(final_release["package"], keys)
    dataset, index = _index(synthetic_data)
    assert "final fit" in manifest.metrics["split"]
    assert manifest.metrics["n_test_images"] == len(index.split["validation"])
    export = json.loads((final_release["run"] / "export.json").read_text())
    rate = export["ood"]["cross_calibrated_flag_rate"]
    assert manifest.metrics["ood"]["in_distribution_test_flag_rate"] == pytest.approx(rate)
    report = (final_release["work"] / "models" / "all-small-cnn-0.2.0" / "report.md").read_text()
    assert "final fit: the train and test blocks train together" in report
    assert "each half at the threshold the other half sets" in report
    assert f"train {len(index.split['train']) + len(index.split['test'])}, validation {len(index.split['validation'])}" in report
    assert "last epoch kept" in report
