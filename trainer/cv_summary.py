"""Cross-validation figures: per-fold headline metrics, mean and t-interval over folds, Markdown tables."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

METRICS = ("accuracy", "macro_recall", "benign_recall", "ece")
MODELS = {"cnn": "CNN", "colour_baseline": "colour baseline"}
CI_METHOD = "95% t-interval over folds: mean ± t(0.975, n-1)·sd/√n (sd with n-1), clipped to [0, 1]"


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict[str, float | int | None]:
    """Mean, standard deviation and two-sided t confidence interval over folds (None below two folds)."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n if n else math.nan
    out: dict[str, float | int | None] = {"mean": mean, "sd": None, "low": None, "high": None, "n": n}
    out["min"], out["max"] = (min(values), max(values)) if n else (None, None)
    if n < 2:
        return out
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    out.update(sd=sd, low=max(0.0, mean - half), high=min(1.0, mean + half))
    return out


def focus_class(classes: Sequence[str]) -> str:
    """The class whose recall is highlighted: Benign, or the first class when there is none."""
    return "Benign" if "Benign" in classes else classes[0]


def headline(report: dict[str, Any], focus: str) -> dict[str, Any]:
    """Accuracy, macro recall, the focus class's recall, ECE and per-class recall from a classification report."""
    return {
        "accuracy": report["accuracy"],
        "macro_recall": report["macro_recall"],
        "benign_recall": report["per_class"][focus]["recall"],
        "ece": report["ece"],
        "per_class_recall": {c: m["recall"] for c, m in report["per_class"].items()},
    }


def summarise(fold_results: list[dict[str, Any]], focus: str) -> dict[str, Any]:
    """Per-fold rows, mean and CI per model and metric, the worst fold's focus recall, robustness means."""
    rows = [
        {
            "fold": r["fold"],
            "n_test": r["cnn"]["n_images"],
            "sizes": r["sizes"],
            "schedule": r["schedule"],
            **{model: headline(r[model], focus) for model in MODELS},
        }
        for r in fold_results
    ]
    overall = {model: {m: mean_ci([row[model][m] for row in rows]) for m in METRICS} for model in MODELS}
    worst = {model: min((row[model]["benign_recall"] for row in rows), default=None) for model in MODELS}
    robustness: dict[str, dict[str, float]] = {}
    measured = [r for r in fold_results if r["robustness"]]  # folds run with --robustness-images 0 have none
    for case in measured[0]["robustness"] if measured else []:
        values = {who: [r["robustness"][case][who] for r in measured] for who in MODELS.values()}
        robustness[case] = {who: sum(v) / len(v) for who, v in values.items()}
        robustness[case]["CNN min fold"] = min(values["CNN"])
    means = {model: {m: overall[model][m]["mean"] for m in METRICS} for model in MODELS}
    ahead = {
        "accuracy": means["cnn"]["accuracy"] > means["colour_baseline"]["accuracy"],
        "benign_recall": means["cnn"]["benign_recall"] > means["colour_baseline"]["benign_recall"],
        "every_shift": bool(robustness) and all(v["CNN"] > v["colour baseline"] for k, v in robustness.items() if k != "clean"),
    }
    return {
        "per_fold": rows, "overall": overall, "min_fold_benign_recall": worst,
        "robustness": robustness, "cnn_ahead_of_baseline": ahead, "ci_method": CI_METHOD,
    }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _cell(stats: dict[str, Any], ece: bool) -> str:
    fmt = (lambda v: "n/a" if v is None else f"{v:.4f}") if ece else _pct
    interval = f" [{fmt(stats['low'])}, {fmt(stats['high'])}]" if stats["low"] is not None else ""
    return fmt(stats["mean"]) + interval


def summary_rows(summary: dict[str, Any], focus: str) -> list[str]:
    """Markdown rows: each metric's mean [95% CI] for the CNN and the colour baseline."""
    names = {"accuracy": "accuracy", "macro_recall": "macro recall", "benign_recall": f"**{focus} recall**", "ece": "ECE"}
    rows = ["| metric | CNN mean [95% CI] | colour baseline mean [95% CI] |", "|---|---:|---:|"]
    for m in METRICS:
        cells = [_cell(summary["overall"][model][m], m == "ece") for model in MODELS]
        rows.append(f"| {names[m]} | " + " | ".join(cells) + " |")
    worst = summary["min_fold_benign_recall"]
    rows.append(f"| lowest fold {focus} recall | {_pct(worst['cnn'])} | {_pct(worst['colour_baseline'])} |")
    return rows


def fold_rows(summary: dict[str, Any], focus: str) -> list[str]:
    """Markdown rows: one per fold with its schedule and both models' headline metrics."""
    head = "| fold | test images | epochs (best) | stopped by | train min | " + " | ".join(
        f"{who} acc | {who} macro rec | {who} {focus} rec | {who} ECE" for who in ("CNN", "colour")
    ) + " |"
    rows = [head, "|---:|---:|---:|---|---:|" + "---:|" * 8]
    for row in summary["per_fold"]:
        s = row["schedule"]
        cells = [
            f"{_pct(row[model]['accuracy'])} | {_pct(row[model]['macro_recall'])} | "
            f"{_pct(row[model]['benign_recall'])} | {row[model]['ece']:.4f}"
            for model in MODELS
        ]
        rows.append(
            f"| {row['fold']} | {row['n_test']} | {s['epochs_run']} ({s['best_epoch']}) | {s['stopped_by']} | "
            f"{s['train_seconds'] / 60:.1f} | " + " | ".join(cells) + " |"
        )
    return rows


def class_rows(summary: dict[str, Any], classes: Sequence[str]) -> list[str]:
    """Markdown rows: per-class recall of each fold, CNN / colour baseline."""
    rows = ["| fold | " + " | ".join(classes) + " |", "|---:|" + "---:|" * len(classes)]
    for row in summary["per_fold"]:
        cells = [
            f"{_pct(row['cnn']['per_class_recall'][c])} / {_pct(row['colour_baseline']['per_class_recall'][c])}"
            for c in classes
        ]
        rows.append(f"| {row['fold']} | " + " | ".join(cells) + " |")
    return rows


def robustness_rows(summary: dict[str, Any]) -> list[str]:
    """Markdown rows: mean accuracy over folds under each shift, the CNN's worst fold, who is ahead."""
    rows = ["| condition | CNN | colour baseline | CNN worst fold | CNN ahead |", "|---|---:|---:|---:|---|"]
    for case, v in summary["robustness"].items():
        ahead = "yes" if v["CNN"] > v["colour baseline"] else "no"
        rows.append(f"| {case} | {_pct(v['CNN'])} | {_pct(v['colour baseline'])} | {_pct(v['CNN min fold'])} | {ahead} |")
    return rows


def error_clusters(labels: Sequence[int], predicted: Sequence[int], components: Sequence[str], top: int = 3) -> dict[str, Any]:
    """How one model's errors on one fold fall into components (blocks of neighbouring file numbers)."""
    sizes = Counter(components)
    wrong = Counter(c for c, y, p in zip(components, labels, predicted, strict=True) if y != p)
    ranked = sorted(wrong.items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "errors": sum(wrong.values()), "components": len(sizes), "components_with_errors": len(wrong),
        "largest": [{"component": c, "errors": n, "images": sizes[c]} for c, n in ranked[:top]],
    }


def _largest(cluster: dict[str, Any]) -> str:
    return "; ".join(f"{c['component']}: {c['errors']} of {c['images']}" for c in cluster["largest"]) or "none"


def errors_in_largest_two(clusters: dict[str, dict[str, Any]]) -> tuple[int, int]:
    """CNN errors in each fold's two most-affected components, summed over folds, and all its errors."""
    errors = sum(c["cnn"]["errors"] for c in clusters.values())
    return sum(x["errors"] for c in clusters.values() for x in c["cnn"]["largest"][:2]), errors


def error_rows(clusters: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown rows: per fold, how many components hold each model's errors and which hold the most."""
    rows = [
        "| fold | CNN errors | in components | CNN's largest (errors of images) | colour errors | in components | both wrong |",
        "|---:|---:|---:|---|---:|---:|---:|",
    ]
    for fold, c in sorted(clusters.items(), key=lambda kv: int(kv[0])):
        cnn, colour = c["cnn"], c["colour_baseline"]
        rows.append(
            f"| {fold} | {cnn['errors']} | {cnn['components_with_errors']} of {cnn['components']} | {_largest(cnn)} | "
            f"{colour['errors']} | {colour['components_with_errors']} of {colour['components']} | {c['both_wrong']} |"
        )
    in_two, errors = errors_in_largest_two(clusters)
    if errors:
        clustered = in_two >= errors / 2
        rows += ["", f"The two components with most CNN errors in each fold hold {in_two} of its {errors} errors "
                 f"({100 * in_two / errors:.0f}%)" + (": errors come in clusters of neighbouring fields (likely one "
                 "patient or slide each), so a fold's accuracy moves in steps of a whole cluster." if clustered else ".")]
    return rows
