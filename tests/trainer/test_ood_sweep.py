"""The OOD threshold rule sweep: replaying rules from kept score parts, and choosing one by cross-validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from contracts.confs import TrainerConfs
from trainer import ood_sweep
from trainer.ood import MahalanobisFit, with_threshold
from trainer.ood_report import cross_calibrated_flag_rate
from trainer.ood_sweep import Rule
from trainer.stain_gate import combined_scores


def _fold(rng: np.random.Generator, id_tail: float = 0.0) -> dict[str, np.ndarray]:
    """Parts of one fold: in-distribution scores near 1 (test with an optional heavier tail), shifted sets above."""
    spread = lambda n, level: rng.normal(level, 0.02, (n, 2))  # noqa: E731
    test = rng.gamma(20, 0.05, 400) * (1 + id_tail * (rng.random(400) < 0.03))
    return {
        "train/spread": spread(1000, 0.5),
        "validation/feature": rng.gamma(20, 0.05, 300), "validation/spread": spread(300, 0.5),
        "test/feature": test, "test/spread": spread(400, 0.5),
        "far set/feature": rng.gamma(20, 0.05, 50) * 3, "far set/spread": spread(50, 0.5),
        "tuning: stained/feature": rng.gamma(20, 0.05, 50), "tuning: stained/spread": spread(50, 0.62),
        "tuning: near/feature": rng.gamma(20, 0.05, 50) * 1.6, "tuning: near/spread": spread(50, 0.5),
    }


def test_a_rule_replays_the_shipped_score() -> None:
    rng = np.random.default_rng(0)
    parts = _fold(rng)
    rule = Rule(0.99, 1.1, 0.98)
    fit = with_threshold(MahalanobisFit(np.zeros((1, 2)), np.eye(2)), parts["validation/feature"], 0.99, 1.1)
    limits = np.quantile(parts["train/spread"], 0.98, axis=0)
    for group, rate in ood_sweep.flag_rates(parts, rule).items():
        ratios = (parts[f"{group}/spread"] / limits).min(axis=1)
        shipped = combined_scores(parts[f"{group}/feature"], ratios, fit.threshold) > fit.threshold
        assert rate == pytest.approx(shipped.mean(), abs=1e-9), group
    assert fit.threshold == pytest.approx(1.1 * np.quantile(parts["validation/feature"], 0.99))


def test_the_choice_keeps_the_folds_mean_within_the_budget_and_never_looks_at_evaluation_sets() -> None:
    rng = np.random.default_rng(1)
    folds = [_fold(rng, id_tail=0.6) for _ in range(3)]
    result = ood_sweep.sweep(folds, budget=0.015)
    chosen = result["chosen"]
    assert chosen is not None and chosen["sets"]["test"]["mean"] <= 0.015
    assert chosen["rule"]["stain_quantile"] is not None, "the stained tuning set is only caught by the gate"
    # No eligible rule flags more of the tuning sets; the evaluation set had no say.
    eligible = [r for r in result["rules"] if r["sets"]["test"]["mean"] <= 0.015]
    assert any(r["sets"]["test"]["mean"] > 0.015 for r in result["rules"]), "the budget must rule something out"
    assert chosen["tuning_mean"] == max(r["tuning_mean"] for r in eligible)
    renamed = [{k.replace("far set", "another far set"): v for k, v in f.items()} for f in folds]
    assert ood_sweep.sweep(renamed, budget=0.015)["chosen"]["rule"] == chosen["rule"]


def test_no_rule_is_chosen_when_none_fits_the_budget_and_the_table_says_so() -> None:
    rng = np.random.default_rng(2)
    folds = [_fold(rng, id_tail=5.0) for _ in range(2)]
    result = ood_sweep.sweep(folds, budget=0.0)
    assert result["chosen"] is None
    rows = ood_sweep.sweep_rows(result, Rule(0.99, 1.0, 0.98))
    assert any("no rule keeps the mean within the budget" in row for row in rows)
    assert any(row.startswith("| in-distribution test images |") for row in rows)
    with pytest.raises(ValueError, match="at least one fold"):
        ood_sweep.sweep([])


def test_parts_survive_saving(tmp_path: Path) -> None:
    parts = _fold(np.random.default_rng(3))
    ood_sweep.save(tmp_path / ood_sweep.FILE, parts)
    loaded = ood_sweep.load(tmp_path / ood_sweep.FILE)
    assert loaded.keys() == parts.keys() and all(np.array_equal(loaded[k], parts[k]) for k in parts)
    assert ood_sweep.groups(loaded) == ["far set", "test", "tuning: near", "tuning: stained"]


def test_tuning_sets_are_made_from_the_given_fields() -> None:
    fields = np.random.default_rng(4).integers(60, 250, (3, 32, 32, 3), dtype=np.uint8)
    sets = ood_sweep.tuning_sets(fields)
    assert all(name.startswith("tuning:") and batch.shape == fields.shape for name, batch in sets.items())
    assert all(not np.array_equal(batch, fields) for batch in sets.values())


def test_the_margin_scales_the_cross_calibrated_rate_and_is_validated() -> None:
    scores = np.random.default_rng(5).gamma(20, 0.05, 200)
    halves = [np.arange(100), np.arange(100, 200)]
    gated = np.zeros(200, bool)
    assert cross_calibrated_flag_rate(scores, gated, halves, 0.9, 2.0) < cross_calibrated_flag_rate(scores, gated, halves, 0.9)
    assert TrainerConfs.model_validate({"ood_threshold_margin": 1.25}).ood_threshold_margin == 1.25
    for bad in (0.9, 5, "wide"):
        with pytest.raises(ValidationError, match="ood_threshold_margin"):
            TrainerConfs.model_validate({"ood_threshold_margin": bad})


def test_the_package_gets_the_sweep_without_its_full_table() -> None:
    from trainer.release import _compact_cv

    rng = np.random.default_rng(6)
    result = ood_sweep.sweep([_fold(rng) for _ in range(2)], budget=0.02)
    confs = TrainerConfs.model_validate({"ood_quantile": 0.995, "ood_threshold_margin": 1.25, "ood_stain_quantile": 0.99})
    small = _compact_cv({"folds": 2, "ood_rule_sweep": result}, confs)["ood_rule_sweep"]
    assert "rules" not in small and small["rules_compared"] == len(ood_sweep.rules()) == 192 and small["chosen"] == result["chosen"]
    assert small["configured"]["rule"] == {"quantile": 0.995, "margin": 1.25, "stain_quantile": 0.99}
    assert ood_sweep.sweep_rows(small, Rule(0.995, 1.25, 0.99)) == ood_sweep.sweep_rows(result, Rule(0.995, 1.25, 0.99))
    assert _compact_cv(None, confs) is None and _compact_cv({"folds": 2}, confs) == {"folds": 2}


def test_the_frontier_gives_the_best_floor_per_budget_and_chooses_nothing() -> None:
    rng = np.random.default_rng(8)
    result = ood_sweep.sweep([_fold(rng, id_tail=0.6) for _ in range(2)], budget=0.02)
    rows = ood_sweep.frontier_rows(result, budgets=(-1.0, 0.02, 1.0))
    assert rows[2] == "| -100% | none | |"
    for row, budget in zip(rows[3:], (0.02, 1.0)):
        floors = [ood_sweep._evaluation_floor(r)[0] for r in result["rules"] if r["sets"]["test"]["mean"] <= budget]
        assert f"| {100 * max(floors):.1f}% (far set) |" in row
    assert float(rows[4].split("|")[2].split("%")[0]) >= float(rows[3].split("|")[2].split("%")[0]), "a wider budget never does worse"
    assert "tuning" not in "".join(rows[2:]).replace("tuning sets", ""), "only evaluation sets are named"
