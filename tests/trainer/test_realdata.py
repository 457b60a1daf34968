"""Checks on the real dataset and the released package; skipped when ../shared is absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REAL_DATA = REPO.parent / "shared" / "datasets" / "all-aria"


def _newest_release() -> Path:
    from contracts.model_package import version_key

    found = [(version_key(p.name[:-7].rsplit("-", 1)[-1]), p) for p in (REPO / "models").glob("*-*.*.*.tar.gz")]
    return max(found)[1] if found else REPO / "models" / "missing.tar.gz"


RELEASED = _newest_release()

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"real dataset not present at {REAL_DATA}"),
]


def test_real_index_finds_the_known_duplicates_and_keeps_groups_in_one_split() -> None:
    from trainer.data import scan_dataset
    from trainer.split import block_split

    dataset = scan_dataset(REAL_DATA)
    assert len(dataset.records) == 2871 and not dataset.skipped
    index = block_split(dataset, 0.15, 0.15, 20, seed=42)
    assert len(index.duplicates) == 40
    assert all(dataset.records[a].label == "Pro" for a, _ in index.duplicates)
    where = {int(i): name for name, idx in index.split.items() for i in idx}
    assert all(len({where[i] for i in group}) == 1 for group in index.groups)


@pytest.mark.skipif(not RELEASED.is_file(), reason=f"no released package at {RELEASED}")
def test_released_package_meets_the_targets_on_the_block_test_split(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("evaluate", "--package", str(RELEASED), "--data", str(REAL_DATA), "--split", "test", "--json", cwd=REPO)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["n_images"] > 300
    assert metrics["accuracy"] >= 0.99
    assert metrics["per_class"]["Benign"]["recall"] >= 0.97
    if "out_of_distribution" in metrics:  # format-2 releases carry a detector: few in-distribution images flagged
        assert metrics["out_of_distribution"]["share"] <= 0.02


@pytest.mark.skipif(not RELEASED.is_file(), reason=f"no released package at {RELEASED}")
def test_released_report_carries_cross_validation_and_ood_figures() -> None:
    metrics = json.loads((RELEASED.parent / RELEASED.name.replace(".tar.gz", "") / "manifest.json").read_text())["metrics"]
    if "cross_validation" not in metrics:
        pytest.skip(f"{RELEASED.name} predates cross-validated releases")
    cv = metrics["cross_validation"]
    assert cv["complete"] and cv["folds"] >= 5 and len(cv["per_fold"]) == cv["folds"]
    for model in ("cnn", "colour_baseline"):
        accuracy = cv["overall"][model]["accuracy"]
        assert 0 < accuracy["low"] <= accuracy["mean"] <= accuracy["high"] <= 1
    # Whatever the clean figures, the CNN must stay ahead of the colour shortcut under every shift.
    assert cv["cnn_ahead_of_baseline"]["every_shift"]
    assert set(metrics["ood"]["sets"]) >= {"natural images", "zoomed cells (4x)", "black", "blank fields"}


@pytest.mark.skipif(not RELEASED.is_file(), reason=f"no released package at {RELEASED}")
def test_released_report_shows_the_cnn_ahead_of_the_colour_baseline_under_every_shift() -> None:
    metrics = json.loads((RELEASED.parent / RELEASED.name.replace(".tar.gz", "") / "metrics.json").read_text())
    for condition, scores in metrics["robustness"].items():
        if condition != "clean":
            assert scores["CNN"] > scores["colour baseline"], condition
