"""The model card at the top of a release report: what the model is for, how well it does, where it fails."""

from __future__ import annotations

from typing import Any

DISCLAIMER = (
    "A research tool, not a diagnostic device: it has no regulatory clearance, and every result needs a "
    "qualified hematologist's review before it informs care."
)


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _cv_lines(cv: dict[str, Any] | None) -> list[str]:
    from trainer import cv_summary

    if not cv:
        return ["- no cross-validation summary was found (`python -m trainer cv --out runs/cv`)"]
    focus = cv.get("focus_class", "Benign")
    return [*cv.get("notes", []), "", *cv_summary.summary_rows(cv, focus)]


def _cv_ood_lines(cv: dict[str, Any] | None) -> list[str]:
    from trainer.cv_ood import flag_rate_line, sets_line

    summary = (cv or {}).get("ood")
    if not summary:
        return []
    sets = sets_line(summary)
    return [f"- in cross-validation, each fold's detector on its unseen test fold: {flag_rate_line(summary)}"] + (
        [f"- in cross-validation, {sets}"] if sets else []) + _rule_lines((cv or {}).get("ood_rule_sweep"))


def _rule_lines(sweep: dict[str, Any] | None) -> list[str]:
    if not sweep:
        return []
    chosen = sweep["chosen"]
    if chosen is None:
        return [f"- threshold rule: of {sweep['rules_compared']} rules compared in cross-validation, none kept the "
                f"folds' mean within {100 * sweep['budget']:g}% of in-distribution images flagged"]
    return [f"- threshold rule chosen by cross-validation ({sweep['rules_compared']} rules; tuning sets from validation images "
            f"only): {chosen['label']}; its highest fold flags {100 * chosen['sets']['test']['max']:.2f}% of unseen "
            "in-distribution images, a figure the choice itself used"]


def _cluster_lines(cv: dict[str, Any] | None) -> list[str]:
    from trainer.cv_summary import errors_in_largest_two

    in_two, errors = errors_in_largest_two((cv or {}).get("error_clusters") or {})
    if not errors or in_two < errors / 2:
        return []
    return [
        f"- errors come in clusters: in cross-validation the two blocks of neighbouring fields with most errors in each "
        f"fold held {in_two} of the CNN's {errors} errors; all the fields of one patient can be misread together, "
        "often with high confidence, and aggregating per specimen does not correct that"
    ]


def card_sections(
    metrics: dict[str, Any], ood: dict[str, Any], cv: dict[str, Any] | None,
    held_out: str = "block test split (read once for this release)",
) -> list[tuple[str, list[str]]]:
    """Model card sections: intended use, data, estimates, robustness, OOD, failure modes."""
    test, table = metrics["test"], metrics["robustness"]
    worst_shift = min((k for k in table if k != "clean"), key=lambda k: table[k]["CNN"], default="clean")
    weakest_class = min(test["per_class"], key=lambda k: test["per_class"][k]["recall"])
    return [
        ("Model card: intended use", [
            "- classifies one peripheral blood smear field of view (224×224 RGB, as the Aria et al. dataset) as "
            "Benign (hematogones) or one of the B-ALL subtypes Early Pre-B, Pre-B, Pro-B",
            "- for research and for triage in a laboratory that reviews every result; a specimen's verdict needs many fields",
            f"- {DISCLAIMER}",
        ]),
        ("Model card: data and its known problems", [
            "- one laboratory (Taleqani Hospital, Tehran), 89 patients, no patient ids: blocks of consecutive file "
            "numbers stand in for patients; exact and near duplicates are grouped so no group spans two splits",
            "- colour and illumination differ by class, and a scale-bar label sits in a corner: the model masks the "
            "corner and standardises each image, and is checked against a colour-only baseline and under stain shifts",
        ]),
        ("Model card: how well it does", [
            *_cv_lines(cv),
            "",
            f"- {held_out}: accuracy {_pct(test['accuracy'])}, macro recall "
            f"{_pct(test['macro_recall'])}, Benign recall {_pct(test['per_class'].get('Benign', {}).get('recall', 0))}, "
            f"ECE {test['ece']:.3f}",
            f"- weakest shift: {worst_shift} ({_pct(table[worst_shift]['CNN'])}); weakest class recall: {weakest_class}",
        ]),
        ("Model card: out of distribution and known failure modes", [
            f"- in-distribution images flagged out of distribution ({ood['in_distribution_measured_on']}): "
            f"{_pct(ood['in_distribution_test_flag_rate'])}; OOD sets flagged: "
            + ", ".join(f"{k} {_pct(v['flagged'])}" for k, v in ood["sets"].items()),
            *_cv_ood_lines(cv),
            "- a flagged result reads \"needs review: outside what this model was trained on\", never a diagnosis",
            "- not validated on other laboratories, stains, microscopes or magnifications; images from them may be "
            "classified with confidence when the detector does not flag them",
            "- Benign against Early Pre-B is the hardest call; single fields can be wrong: aggregate per specimen",
            *_cluster_lines(cv),
            "- the stain gate catches over-stained fields only; a pale, under-stained field is left to the feature "
            "detector, and a pale field with few cells stained far more intensely (stain x2.5) can stay within the "
            "training fields' stain spread and pass",
        ]),
    ]
