"""Grouped k-fold cross-validation: folds, the interval math, the `cv` command end to end and its bad inputs."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from trainer import ood_sweep
from trainer.cv import component_names, parse_only_folds
from trainer.cv_summary import error_clusters, mean_ci
from trainer.data import ScannedDataset, scan_dataset
from trainer.errors import TrainerError
from trainer.split import build_components, fold_split, grouped_folds

CLASSES = ("Alpha", "Beta", "Gamma")


@pytest.fixture(scope="module")
def linked(tmp_path_factory: pytest.TempPathFactory, dataset_maker) -> ScannedDataset:  # type: ignore[no-untyped-def]
    """40 images per class; besides 2=3 and 9~10, file 18 copies file 7 and file 37 is a near twin of file 4."""
    root = dataset_maker(tmp_path_factory.mktemp("linked"), per_class=40)
    for name in CLASSES:
        folder = root / name
        (folder / f"IMG-{name}-018.jpg").write_bytes((folder / f"IMG-{name}-007.jpg").read_bytes())
        twin = cv2.imread(str(folder / f"IMG-{name}-004.jpg"))
        near = cv2.add(cv2.GaussianBlur(twin, (3, 3), 0), 4)
        cv2.imwrite(str(folder / f"IMG-{name}-037.jpg"), near, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return scan_dataset(root, image_size=64)


def _name(dataset: ScannedDataset, i: int) -> str:
    return dataset.records[i].path.name


def _fold_of_image(folds) -> dict[int, int]:  # type: ignore[no-untyped-def]
    return {int(i): f for f, idx in enumerate(folds.folds) for i in idx}


def test_the_linked_dataset_has_the_planted_duplicates_and_near_duplicates(linked: ScannedDataset) -> None:
    comps = build_components(linked, 5)
    dropped = {(_name(linked, a), _name(linked, b)) for a, b in comps.duplicates}
    groups = [sorted(_name(linked, i) for i in g) for g in comps.groups]
    for c in CLASSES:
        assert (f"IMG-{c}-003.jpg", f"IMG-{c}-002.jpg") in dropped and (f"IMG-{c}-018.jpg", f"IMG-{c}-007.jpg") in dropped
        assert [f"IMG-{c}-004.jpg", f"IMG-{c}-037.jpg"] in groups and [f"IMG-{c}-009.jpg", f"IMG-{c}-010.jpg"] in groups


@pytest.mark.parametrize(("k", "seed"), [(2, 0), (3, 1), (4, 2), (5, 3)])
def test_folds_never_split_a_block_or_a_near_duplicate_group(linked: ScannedDataset, k: int, seed: int) -> None:
    folds = grouped_folds(linked, k, 5, seed)
    where = _fold_of_image(folds)
    for group in folds.components.groups:
        assert len({where[i] for i in group}) == 1
    by_block: dict[str, set[int]] = {}
    for i, block in folds.components.block_of.items():
        by_block.setdefault(block, set()).add(where[i])
    assert all(len(s) == 1 for s in by_block.values())
    # 4~37 ties block 0 to block 7, 9~10 ties block 1 to block 2: each pair of blocks shares a fold.
    for c in CLASSES:
        numbers = {r.number: where[i] for i, r in enumerate(linked.records) if r.label == c and i in where}
        assert numbers[1] == numbers[4] == numbers[35] == numbers[39]
        assert numbers[5] == numbers[14]


@pytest.mark.parametrize("k", [2, 3, 5])
def test_every_kept_image_is_in_exactly_one_fold_and_dropped_copies_in_none(linked: ScannedDataset, k: int) -> None:
    folds = grouped_folds(linked, k, 5, seed=7)
    everything = np.concatenate(folds.folds)
    assert len(everything) == len(set(everything.tolist()))
    assert sorted(everything.tolist()) == sorted(folds.components.keep)
    dropped = {a for a, _ in folds.components.duplicates}
    assert dropped and not dropped & set(everything.tolist())
    assert len(everything) == 3 * 38


def test_folds_are_stratified_by_class(tmp_path: Path, dataset_maker) -> None:  # type: ignore[no-untyped-def]
    root = dataset_maker(tmp_path / "data", classes=("A", "B", "C", "D"), per_class=48)
    dataset = scan_dataset(root, image_size=64)
    k = 4
    folds = grouped_folds(dataset, k, 4, seed=5)
    biggest = max(len(m) for m in folds.components.members.values())
    totals = Counter(r.label for i, r in enumerate(dataset.records) if i in set(folds.components.keep))
    for idx in folds.folds:
        counts = Counter(dataset.records[i].label for i in idx)
        for c in ("A", "B", "C", "D"):
            assert abs(counts[c] - totals[c] / k) <= biggest, (c, counts, totals)
    assert max(len(f) for f in folds.folds) - min(len(f) for f in folds.folds) <= biggest


def test_fold_split_tests_the_fold_and_validates_on_whole_components(linked: ScannedDataset) -> None:
    folds = grouped_folds(linked, 3, 5, seed=2)
    comp_of = {i: comp for comp, members in folds.components.members.items() for i in members}
    for k in range(3):
        split = fold_split(folds, k, 0.15, seed=2)
        parts = {name: set(v.tolist()) for name, v in split.split.items()}
        assert parts["test"] == set(folds.folds[k].tolist())
        assert not (parts["train"] & parts["validation"]) and not (parts["train"] | parts["validation"]) & parts["test"]
        assert parts["train"] | parts["validation"] | parts["test"] == set(folds.components.keep)
        assert all(len(v) for v in parts.values())
        assert not {comp_of[i] for i in parts["train"]} & {comp_of[i] for i in parts["validation"]}
        assert {linked.records[i].label for i in parts["train"]} == set(CLASSES)


def test_folds_follow_the_seed(linked: ScannedDataset) -> None:
    a, b = grouped_folds(linked, 3, 5, seed=4), grouped_folds(linked, 3, 5, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a.folds, b.folds))
    others = [grouped_folds(linked, 3, 5, seed=s) for s in range(5, 9)]
    assert any(not np.array_equal(o.folds[0], a.folds[0]) for o in others)


def test_impossible_fold_counts_raise(linked: ScannedDataset) -> None:
    with pytest.raises(TrainerError, match="at least 2"):
        grouped_folds(linked, 1, 5, 0)
    with pytest.raises(TrainerError, match="components"):
        grouped_folds(linked, 9, 5, 0)


def test_mean_ci_uses_the_t_distribution_over_folds() -> None:
    ci = mean_ci([0.90, 0.95, 1.00, 0.85, 0.90])
    sd = math.sqrt(0.013 / 4)
    half = 2.7764451 * sd / math.sqrt(5)  # t(0.975, 4)
    assert ci["mean"] == pytest.approx(0.92) and ci["sd"] == pytest.approx(sd)
    assert ci["low"] == pytest.approx(0.92 - half, abs=1e-6) and ci["high"] == pytest.approx(0.92 + half, abs=1e-6)
    assert (ci["min"], ci["max"], ci["n"]) == (0.85, 1.0, 5)
    assert mean_ci([0.99, 1.0, 1.0])["high"] == 1.0  # clipped: a proportion cannot exceed 1
    same = mean_ci([0.5, 0.5])
    assert same["low"] == same["high"] == 0.5
    assert mean_ci([0.7])["low"] is None


def test_parse_only_folds() -> None:
    assert parse_only_folds(None, 3) == [0, 1, 2]
    assert parse_only_folds("2, 0,2", 3) == [0, 2]
    with pytest.raises(TrainerError, match="comma-separated"):
        parse_only_folds("one", 3)
    with pytest.raises(TrainerError, match="out of range"):
        parse_only_folds("3", 3)


def _clean_failure(result, needle: str) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "error:" in result.stderr and needle in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--folds", "1"], "at least 2"),
        (["--folds", "40"], "components"),
        (["--only-folds", "0,x"], "comma-separated"),
        (["--folds", "3", "--only-folds", "3"], "out of range"),
        (["--epochs", "0"], "invalid trainer setting"),
        (["--data", "MISSING"], "not found"),
        (["--data", "ONE_CLASS"], "at least 2 classes"),
        (["--training-seed", "-1"], "--training-seed must be 0 or more"),
        (["--training-seed", "seven"], "invalid int value"),
    ],
)
def test_bad_inputs_get_one_clear_error(cli, confs_writer, dataset_maker, synthetic_data: Path, tmp_path: Path, extra: list[str], needle: str) -> None:  # type: ignore[no-untyped-def]
    confs = confs_writer(tmp_path / "confs.json", synthetic_data, tmp_path)
    if "ONE_CLASS" in extra:
        dataset_maker(tmp_path / "one", classes=("Only",), per_class=6)
    extra = [str(tmp_path / "nowhere") if a == "MISSING" else str(tmp_path / "one") if a == "ONE_CLASS" else a for a in extra]
    _clean_failure(cli("--confs", str(confs), "cv", "--out", str(tmp_path / "cv"), *extra), needle)


def test_cv_end_to_end_is_resumable(cli, confs_writer, synthetic_data: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    confs = confs_writer(tmp_path / "confs.json", synthetic_data, tmp_path, train_crop=48)
    out = tmp_path / "cv"
    tiny = ["--confs", str(confs), "cv", "--folds", "2", "--epochs", "1", "--max-minutes", "0.2", "--out", str(out)]
    first = cli(*tiny, "--only-folds", "1", "--json", "--robustness-images", "10")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["folds_done"] == [1] and summary["complete"] is False
    assert (out / "fold-1" / "metrics.json").is_file() and not (out / "fold-0").exists()
    assert summary["per_fold"][0]["schedule"]["max_epochs"] == 1 and summary["robustness_images_per_fold"] == [10]
    done_at = (out / "fold-1" / "metrics.json").stat().st_mtime_ns

    second = cli(*tiny, "--robustness-images", "10", "--note", "ran on the test box", "--note", "ran on the test box")
    assert second.returncode == 0, second.stderr
    assert "fold 1 is already in" in second.stderr and (out / "fold-1" / "metrics.json").stat().st_mtime_ns == done_at
    assert "colour baseline" in second.stdout and "accuracy" in second.stdout
    result = json.loads((out / "cv.json").read_text())
    assert result["complete"] is True and result["folds_done"] == [0, 1] and result["focus_class"] == "Alpha"
    for model in ("cnn", "colour_baseline"):
        for metric in ("accuracy", "macro_recall", "benign_recall", "ece"):
            stats = result["overall"][model][metric]
            assert stats["n"] == 2 and stats["low"] <= stats["mean"] <= stats["high"]
        assert result["min_fold_benign_recall"][model] is not None
    assert {"clean", "grayscale", "HED jitter"} <= set(result["robustness"])
    report = (out / "cv.md").read_text()
    assert "SHORTER than the release" in report and "t-interval" in report and "(10 per fold)" in report
    assert "- trained with: Keras" in report and "TensorFlow" in report
    assert report.count("- note: ran on the test box") == 1, "a note given twice is kept once"
    assert result["robustness_images_per_fold"] == [10, 10]
    clusters = result["error_clusters"]
    assert set(clusters) == {"0", "1"} and all(c["both_wrong"] <= c["cnn"]["errors"] for c in clusters.values())
    components_per_fold = json.loads((out / "plan.json").read_text())["components_per_fold"]
    assert [clusters[str(f)]["cnn"]["components"] for f in (0, 1)] == components_per_fold
    assert "Where the errors fall" in report
    ood = result["ood"]
    assert [f["fold"] for f in ood["per_fold"]] == [0, 1] and ood["test_flag_rate"]["n"] == 2
    assert all(0.0 <= f["test_flag_rate"] <= 1.0 and f["threshold"] > 0 and f["n_test"] > 0 for f in ood["per_fold"])
    assert "In-distribution images flagged by each fold's OOD detector" in report and "(target at most 2%)" in report
    assert {"natural images", "black", "stain x2.5 (HED)"} <= set(ood["sets"])
    assert all(0.0 <= stats["min"] <= stats["mean"] <= 1.0 and stats["n"] == 2 for stats in ood["sets"].values())
    assert "| OOD set (made from each fold's test images) |" in report and "target at least 95%)" in report
    sweep = result["ood_rule_sweep"]
    assert sweep["folds"] == 2 and len(sweep["rules"]) == len(ood_sweep.rules())
    configured = next(r for r in sweep["rules"] if r["rule"] == {"quantile": 0.99, "margin": 1.0, "stain_quantile": 0.98})
    # The sweep replays the shipped rule from the kept parts: the same flag rates as each fold's detector.
    assert configured["sets"]["test"]["mean"] == pytest.approx(ood["test_flag_rate"]["mean"])
    assert configured["sets"]["natural images"]["mean"] == pytest.approx(ood["sets"]["natural images"]["mean"])
    assert {"tuning: stain x1.8 (HED)", "validation"} & set(configured["sets"]) == {"tuning: stain x1.8 (HED)"}
    assert "## OOD threshold rule chosen by cross-validation" in report and "never at the evaluation sets" in report

    # A fold that finished before its detector (or its OOD sets) was measured is measured from the model it saved.
    fold_files = [out / f"fold-{f}" / "metrics.json" for f in (0, 1)]
    measured = [json.loads(f.read_text()) for f in fold_files]
    fold_files[0].write_text(json.dumps({**measured[0], "ood": {k: v for k, v in measured[0]["ood"].items() if k != "sets"}}))
    fold_files[1].write_text(json.dumps({k: v for k, v in measured[1].items() if k != "ood"}))
    (out / "fold-1" / ood_sweep.FILE).unlink()
    again = cli(*tiny, "--json")
    assert again.returncode == 0, again.stderr
    assert (out / "fold-1" / ood_sweep.FILE).is_file(), "a fold without the kept parts is measured again"
    assert "fold 0: measuring its OOD detector" in again.stderr and "fold 1: measuring its OOD detector" in again.stderr
    for fold_file, before in zip(fold_files, measured):
        after = json.loads(fold_file.read_text())["ood"]
        assert after["sets"] == pytest.approx(before["ood"]["sets"]) and after["test_flag_rate"] == pytest.approx(before["ood"]["test_flag_rate"])

    plan = json.loads((out / "plan.json").read_text())
    oof = np.load(out / "oof.npz")
    assert sorted(oof["files"].tolist()) == sorted(f for fold in plan["files"] for f in fold)
    assert len(oof["files"]) == 87 and oof["cnn_probs"].shape == oof["baseline_probs"].shape == (87, 3)
    assert np.allclose(oof["cnn_probs"].sum(axis=1), 1, atol=1e-4) and set(oof["fold"].tolist()) == {0, 1}

    other = cli(*[a if a != "2" else "3" for a in tiny])  # other folds, same --out
    _clean_failure(other, "choose another --out")


def test_error_clusters_count_errors_per_component_and_rank_the_largest() -> None:
    labels = [0, 0, 0, 1, 1, 1, 2, 2]
    predicted = [1, 1, 0, 1, 0, 1, 2, 0]
    comps = ["A", "A", "A", "B", "B", "B", "C", "C"]
    found = error_clusters(labels, predicted, comps, top=2)
    assert found["errors"] == 4 and found["components"] == 3 and found["components_with_errors"] == 3
    assert found["largest"] == [{"component": "A", "errors": 2, "images": 3}, {"component": "B", "errors": 1, "images": 3}]
    assert error_clusters(labels, labels, comps)["largest"] == []
    with pytest.raises(ValueError):
        error_clusters(labels, predicted[:-1], comps)


def test_components_are_named_by_class_and_file_numbers(linked: ScannedDataset) -> None:
    folds = grouped_folds(linked, 3, 5, seed=0)
    names = component_names(folds, 5)
    assert set(names) == set(folds.components.keep)
    by_file = {_name(linked, i): n for i, n in names.items()}
    assert by_file["IMG-Alpha-021.jpg"] == by_file["IMG-Alpha-024.jpg"] == "Alpha 020-024"
    assert by_file["IMG-Alpha-019.jpg"] != by_file["IMG-Alpha-020.jpg"]
    assert by_file["IMG-Beta-012.jpg"] == by_file["IMG-Beta-009.jpg"], "9 and 10 are near twins, so their blocks merge"
    assert by_file["IMG-Beta-037.jpg"] == by_file["IMG-Beta-004.jpg"] and by_file["IMG-Beta-037.jpg"].endswith("(+ merged)")


def test_the_model_card_says_when_errors_come_in_clusters() -> None:
    from trainer.model_card import card_sections

    per_class = {c: {"recall": 0.95} for c in ("Benign", "Early")}
    metrics = {"test": {"accuracy": 0.95, "macro_recall": 0.95, "ece": 0.01, "per_class": per_class},
               "robustness": {"clean": {"CNN": 0.95}, "grayscale": {"CNN": 0.9}}}
    ood = {"in_distribution_test_flag_rate": 0.01, "in_distribution_measured_on": "test split",
           "sets": {"black": {"flagged": 1.0}}}
    fold = {"cnn": {"errors": 7, "largest": [{"errors": 4}, {"errors": 2}, {"errors": 1}]}}
    overall = {m: {k: mean_ci([0.9, 0.95]) for k in ("accuracy", "macro_recall", "benign_recall", "ece")} for m in ("cnn", "colour_baseline")}
    worst = {"cnn": 0.9, "colour_baseline": 0.9}
    cv = {"notes": [], "overall": overall, "min_fold_benign_recall": worst, "error_clusters": {"0": fold, "1": {"cnn": {"errors": 0, "largest": []}}}}

    def failure_lines(cv: dict) -> list[str]:  # type: ignore[type-arg]
        sections = dict(card_sections(metrics, ood, cv))
        return sections["Model card: out of distribution and known failure modes"]

    clustered = [line for line in failure_lines(cv) if "clusters" in line]
    assert len(clustered) == 1 and "held 6 of the CNN's 7 errors" in clustered[0]
    assert not any("clusters" in line for line in failure_lines(None))
    spread = {"cnn": {"errors": 10, "largest": [{"errors": 2}, {"errors": 1}, {"errors": 1}]}}
    assert not any("clusters" in line for line in failure_lines({**cv, "error_clusters": {"0": spread}}))


def test_cv_without_robustness_images_reports_no_shift_table(cli, confs_writer, synthetic_data: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    confs = confs_writer(tmp_path / "confs.json", synthetic_data, tmp_path, train_crop=48)
    out = tmp_path / "cv"
    run = cli("--confs", str(confs), "cv", "--folds", "2", "--only-folds", "0", "--epochs", "1", "--max-minutes", "0.2",
              "--robustness-images", "0", "--out", str(out), "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["robustness"] == {} and result["robustness_images_per_fold"] == [0]
    assert result["cnn_ahead_of_baseline"]["every_shift"] is False, "no shift measured is not 'ahead under every shift'"
    report = (out / "cv.md").read_text()
    assert "## Robustness" not in report and "robustness: not measured (--robustness-images 0)" in report


def test_the_model_card_gives_the_cross_validated_in_distribution_flag_rate() -> None:
    from trainer.cv_ood import summarise_ood
    from trainer.model_card import card_sections

    per_class = {"Benign": {"recall": 0.95}}
    metrics = {"test": {"accuracy": 0.95, "macro_recall": 0.95, "ece": 0.01, "per_class": per_class},
               "robustness": {"clean": {"CNN": 0.95}}}
    ood = {"in_distribution_test_flag_rate": 0.024, "in_distribution_measured_on": "validation halves", "sets": {}}
    folds = [{"fold": f, "ood": {"threshold": 1.2, "validation_flag_rate": 0.01, "test_flag_rate": rate,
                                 "test_stain_gated": 0.0, "n_test": 500, "sets": {"black": 1.0, "blurred": blur}}}
             for f, (rate, blur) in enumerate(((0.01, 1.0), (0.02, 0.925), (0.015, 0.975)))]
    overall = {m: {k: mean_ci([0.9, 0.95]) for k in ("accuracy", "macro_recall", "benign_recall", "ece")} for m in ("cnn", "colour_baseline")}
    cv = {"notes": [], "overall": overall, "min_fold_benign_recall": {"cnn": 0.9, "colour_baseline": 0.9},
          "error_clusters": {}, "ood": summarise_ood([*folds, {"fold": 3}])}
    assert cv["ood"]["test_flag_rate"]["n"] == 3, "a fold without a measured detector is left out, not counted as 0"
    section = dict(card_sections(metrics, ood, cv))["Model card: out of distribution and known failure modes"]
    line, sets = [line for line in section if line.startswith("- in cross-validation")]
    assert "mean over 3 folds: 1.50%" in line and "highest fold 2.00%" in line and "[" in line
    assert "lowest fold of any set 92.5% (blurred" in sets
    assert cv["ood"]["sets"]["blurred"]["mean"] == pytest.approx(0.9666, abs=1e-3)
    assert not any(line.startswith("- in cross-validation") for line in dict(card_sections(metrics, ood, {**cv, "ood": None}))[
        "Model card: out of distribution and known failure modes"])
    assert summarise_ood([{"fold": 0}]) is None
    rng = np.random.default_rng(7)
    folds_parts = [{"train/spread": rng.normal(0.5, 0.02, (200, 2)), "validation/feature": rng.gamma(20, 0.05, 200),
                    "validation/spread": rng.normal(0.5, 0.02, (200, 2)), "test/feature": rng.gamma(20, 0.05, 300),
                    "test/spread": rng.normal(0.5, 0.02, (300, 2)), "tuning: far/feature": rng.gamma(20, 0.05, 40) * 2,
                    "tuning: far/spread": rng.normal(0.5, 0.02, (40, 2))} for _ in range(2)]
    card = dict(card_sections(metrics, ood, {**cv, "ood_rule_sweep": ood_sweep.sweep(folds_parts, budget=0.05)}))
    rule_line = next(line for line in card["Model card: out of distribution and known failure modes"] if "threshold rule" in line)
    assert "threshold rule chosen by cross-validation (192 rules" in rule_line and "a figure the choice itself used" in rule_line
    card = dict(card_sections(metrics, ood, {**cv, "ood_rule_sweep": ood_sweep.sweep(folds_parts, budget=-1.0)}))
    assert any("none kept the folds' mean within -100% " in line for line in card["Model card: out of distribution and known failure modes"])


def test_a_training_seed_retrains_the_same_folds_on_the_same_images(cli, confs_writer, synthetic_data: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    confs = confs_writer(tmp_path / "confs.json", synthetic_data, tmp_path, train_crop=48)
    fold_seed = json.loads(confs.read_text())["trainer"]["seed"]

    def run(out: Path, fold: str, *extra: str) -> dict:  # type: ignore[type-arg]
        result = cli("--confs", str(confs), "cv", "--folds", "2", "--only-folds", fold, "--epochs", "1", "--max-minutes", "0.2",
                     "--robustness-images", "5", "--out", str(out), "--json", *extra)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    plain, seeded = run(tmp_path / "plain", "0"), run(tmp_path / "seeded", "0", "--training-seed", "7")
    assert plain["plan_digest"] == seeded["plan_digest"], "the training seed leaves the folds alone"
    first, second = (np.load(tmp_path / name / "fold-0" / "predictions.npz") for name in ("plain", "seeded"))
    assert first["files"].tolist() == second["files"].tolist(), "the same test images"
    assert not np.allclose(first["cnn_probs"], second["cnn_probs"]), "another training seed trains another model"
    metrics = [json.loads((tmp_path / name / "fold-0" / "metrics.json").read_text()) for name in ("plain", "seeded")]
    assert [m["training_seed"] for m in metrics] == [fold_seed, 7]
    assert metrics[0]["sizes"] == metrics[1]["sizes"], "the same train, validation and test parts"
    assert f"- training seed: 7\n" in (tmp_path / "seeded" / "cv.md").read_text()

    run(tmp_path / "plain", "1", "--training-seed", "7")
    assert f"- training seed: {', '.join(map(str, sorted({fold_seed, 7})))} (MIXED across folds)" in (tmp_path / "plain" / "cv.md").read_text()
