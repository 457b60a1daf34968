"""Choosing the OOD threshold rule by cross-validation.

Each fold keeps the raw parts of its detector's score (feature distances and stain spreads) for its train,
validation and test images, for the OOD sets made from its test images, and for tuning sets made from its
validation images. A rule (threshold quantile, margin over it, stain-gate quantile) is then applied to every
fold without recomputing a feature. The chosen rule flags the most of the tuning sets while the folds flag, on
the mean, no more than the budget of their unseen in-distribution test images; the evaluation sets take no part
in the choice.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer import augment as A
from trainer.stain import hed_jitter

FILE = "ood_components.npz"
QUANTILES = (0.97, 0.98, 0.99, 0.995, 0.998, 1.0)
MARGINS = (1.0, 1.1, 1.25, 1.5)
STAIN_QUANTILES: tuple[float | None, ...] = (None, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 1.0)
BUDGET = 0.02  # the target: a share of all in-distribution images, so the mean over folds (each fold is a few patients)


@dataclass(frozen=True)
class Rule:
    """Threshold = `margin` × the `quantile` of validation feature scores; stain gate at `stain_quantile` (None = off)."""

    quantile: float
    margin: float
    stain_quantile: float | None

    def label(self) -> str:
        """Short text for tables."""
        gate = "off" if self.stain_quantile is None else f"{100 * self.stain_quantile:g}%"
        return f"quantile {100 * self.quantile:g}%, margin ×{self.margin:g}, stain gate {gate}"


def tuning_sets(fields: np.ndarray) -> dict[str, np.ndarray]:
    """Milder shifts than the evaluation sets, made from validation fields: what the choice may look at."""
    return {
        "tuning: stain x1.8 (HED)": np.stack([hed_jitter(f, np.array([1.8, 1.8, 1.0]), np.zeros(3)) for f in fields]),
        "tuning: hue +60": np.stack([A.hue_shift(f, 60) for f in fields]),
        "tuning: over-exposed x1.8": np.stack([A.brightness(f, 1.8) for f in fields]),
    }


def components(
    feature_scores: Any, spreads: Any, images: dict[str, np.ndarray], train_spread: np.ndarray
) -> dict[str, np.ndarray]:
    """Feature scores and stain spreads of each named image group, plus the clean training fields' spreads."""
    out = {"train/spread": np.asarray(train_spread, np.float64)}
    for name, batch in images.items():
        out[f"{name}/feature"] = np.asarray(feature_scores(batch), np.float64)
        out[f"{name}/spread"] = np.asarray(spreads(batch), np.float64).reshape(len(batch), 2)
    return out


def save(path: Path, parts: dict[str, np.ndarray]) -> None:
    """Write one fold's components."""
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **parts)
    tmp.replace(path)


def load(path: Path) -> dict[str, np.ndarray]:
    """Read one fold's components."""
    with np.load(path) as data:
        return {name: data[name] for name in data.files}


def groups(parts: dict[str, np.ndarray]) -> list[str]:
    """The image groups a fold's components hold, besides train/validation."""
    names = {key.rsplit("/", 1)[0] for key in parts if key.endswith("/feature")}
    return sorted(names - {"validation"})


def flags(
    parts: dict[str, np.ndarray], name: str, threshold: float, limits: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Which images of a group the score flags at this threshold and stain limits, and which the gate flags alone."""
    from trainer.stain_gate import spread_ratios  # the gate module loads Keras: not at `trainer cv` start-up

    gated = np.zeros(len(parts[f"{name}/feature"]), bool)
    if limits is not None:
        gated = spread_ratios(parts[f"{name}/spread"], limits) > 1.0
    return (parts[f"{name}/feature"] > threshold) | gated, gated


def flag_rates(parts: dict[str, np.ndarray], rule: Rule) -> dict[str, float]:
    """Share of each group flagged under the rule."""
    threshold = rule.margin * float(np.quantile(parts["validation/feature"], rule.quantile))
    limits = None if rule.stain_quantile is None else np.quantile(parts["train/spread"], rule.stain_quantile, axis=0)
    rates = {}
    for name in groups(parts):
        flagged, _gated = flags(parts, name, threshold, limits)
        rates[name] = float(flagged.mean()) if len(flagged) else 0.0
    return rates


def rules() -> list[Rule]:
    """Every rule the sweep compares."""
    return [Rule(q, m, s) for q, m, s in itertools.product(QUANTILES, MARGINS, STAIN_QUANTILES)]


def sweep(folds: list[dict[str, np.ndarray]], budget: float = BUDGET) -> dict[str, Any]:
    """Every rule over every fold; the chosen one; None chosen when no rule keeps the mean within the budget."""
    if not folds:
        raise ValueError("the sweep needs at least one fold's components")
    rows = []
    for rule in rules():
        per_fold = [flag_rates(parts, rule) for parts in folds]
        names = [n for n in per_fold[0] if all(n in rates for rates in per_fold)]
        stats = {n: {"mean": float(np.mean([r[n] for r in per_fold])), "min": float(min(r[n] for r in per_fold)),
                     "max": float(max(r[n] for r in per_fold))} for n in names}
        tuning = [stats[n]["mean"] for n in names if n.startswith("tuning:")]
        rows.append({"rule": asdict(rule), "label": rule.label(), "sets": stats,
                     "tuning_mean": float(np.mean(tuning)) if tuning else 0.0})
    eligible = [r for r in rows if "test" in r["sets"] and r["sets"]["test"]["mean"] <= budget]
    # Most tuning-set flags; then fewest in-distribution flags; then the simplest rule (earliest in the grid).
    chosen = max(eligible, key=lambda r: (round(r["tuning_mean"], 6), -r["sets"]["test"]["mean"]), default=None)
    return {"budget": budget, "folds": len(folds), "rules_compared": len(rows), "rules": rows, "chosen": chosen}


def _evaluation_floor(row: dict[str, Any]) -> tuple[float, str]:
    """The lowest fold of the weakest evaluation set under a rule, and that set's name."""
    names = [n for n in row["sets"] if n != "test" and not n.startswith("tuning:")]
    if not names:
        return 1.0, ""
    weakest = min(names, key=lambda n: row["sets"][n]["min"])
    return row["sets"][weakest]["min"], weakest


def frontier_rows(result: dict[str, Any], budgets: tuple[float, ...] = (0.01, 0.02, 0.03, 0.05)) -> list[str]:
    """Markdown, for information only: at each in-distribution budget, the best floor any rule reaches on the
    evaluation sets. It looks at those sets, so it chooses nothing; it shows what the detector itself can do."""
    rows = ["| in-distribution flagged, mean at most | best rule's weakest evaluation set, lowest fold | that rule |",
            "|---:|---:|---|"]
    for budget in budgets:
        eligible = [r for r in result.get("rules", []) if "test" in r["sets"] and r["sets"]["test"]["mean"] <= budget]
        if not eligible:
            rows.append(f"| {100 * budget:g}% | none | |")
            continue
        best = max(eligible, key=lambda r: _evaluation_floor(r)[0])
        floor, name = _evaluation_floor(best)
        rows.append(f"| {100 * budget:g}% | {100 * floor:.1f}% ({name}) | {best['label']} |")
    return rows


def compact(result: dict[str, Any], current: Rule) -> dict[str, Any]:
    """The sweep without its full table, for the package: the chosen rule and the configured one."""
    configured = next((r for r in result["rules"] if r["rule"] == asdict(current)), None)
    return {**{k: v for k, v in result.items() if k != "rules"}, "configured": configured}


def sweep_rows(result: dict[str, Any], current: Rule) -> list[str]:
    """Markdown: the chosen rule beside the configured one, every group's mean and lowest (test: highest) fold."""
    shown = [("configured", next((r for r in result.get("rules", []) if r["rule"] == asdict(current)), result.get("configured")))]
    if result["chosen"] is not None:
        shown.append(("chosen", result["chosen"]))
    shown = [(name, row) for name, row in shown if row is not None]
    rows = [
        f"- rules compared: {result['rules_compared']} over {result['folds']} folds; budget: at most "
        f"{100 * result['budget']:g}% of the folds' test images flagged, on the mean; the choice looks only at the tuning sets "
        "(made from validation images) and the test images' flag rate, never at the evaluation sets",
        "- chosen: " + (result["chosen"]["label"] if result["chosen"] else "none: no rule keeps the mean within the budget"),
        "",
        "| group | " + " | ".join(f"{name}: {row['label']}" for name, row in shown) + " |",
        "|---|" + "---:|" * len(shown),
    ]
    names = list(shown[0][1]["sets"])
    ordered = ["test"] * ("test" in names) + [n for n in names if n != "test" and not n.startswith("tuning:")] + [
        n for n in names if n.startswith("tuning:")]
    for group in ordered:
        cells = []
        for _name, row in shown:
            stats = row["sets"][group]
            worst = stats["max"] if group == "test" else stats["min"]
            cells.append(f"{100 * stats['mean']:.1f}% ({'highest' if group == 'test' else 'lowest'} fold {100 * worst:.1f}%)")
        rows.append(f"| {'in-distribution test images' if group == 'test' else group} | " + " | ".join(cells) + " |")
    return rows
