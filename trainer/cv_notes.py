"""The cross-validation report's notes: how the folds were made and run, and free-text notes kept beside them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contracts.confs import TrainerConfs
from trainer import cv_summary as S

NOTES = "notes.txt"


def robustness_note(results: list[dict[str, Any]]) -> str:
    """How many test images per fold the robustness table measured."""
    counts = [r["robustness_images"] for r in results]
    if not any(counts):
        return "- robustness: not measured (--robustness-images 0)"
    every = all(n == sum(r["sizes"]["test"].values()) for n, r in zip(counts, results))
    span = f"{min(counts)}" if min(counts) == max(counts) else f"{min(counts)} to {max(counts)}"
    return f"- robustness: on {'every test image of each fold' if every else 'a fixed random subsample of the test images per fold'} ({span} per fold)"


def add_notes(out: Path, notes: list[str]) -> None:
    """Keep free-text notes (where and how the folds ran) beside the results; each note once."""
    path = out / NOTES
    kept = path.read_text().splitlines() if path.is_file() else []
    for note in (" ".join(n.split()) for n in notes):
        if note and note not in kept:
            kept.append(note)
    path.write_text("".join(f"{line}\n" for line in kept))


def notes_lines(plan: dict[str, Any], confs: TrainerConfs, release: TrainerConfs, results: list[dict[str, Any]], out: Path) -> list[str]:
    """The report's "How" section: data, folds, schedule, seeds, intervals and the kept notes."""
    done = [r["fold"] for r in results]
    trained_with = sorted({r.get("trained_with", "not recorded") for r in results})
    seeds = sorted({r.get("training_seed", plan["seed"]) for r in results})
    extra = (out / NOTES).read_text().splitlines() if (out / NOTES).is_file() else []
    ran = sorted({(r["schedule"]["max_epochs"], r["schedule"]["max_minutes"]) for r in results})
    shorter = any(e < release.epochs or m < release.max_train_minutes for e, m in ran)
    schedules = " or ".join(f"at most {e} epochs and {m:g} minutes" for e, m in ran)
    return [
        f"- data: `{plan['data_dir']}`: {plan['kept']} images kept ({plan['exact_duplicates_removed']} exact duplicates "
        f"and {plan['conflicting_labels_removed']} with conflicting labels removed), {plan['near_duplicate_groups']} "
        f"near-duplicate groups, {plan['components']} components (blocks of {plan['block_size']} consecutive file numbers "
        "per class, merged through near-duplicate groups)",
        f"- folds: {plan['folds']}, stratified by class, seed {plan['seed']}; no component (so no duplicate or "
        "near-duplicate group) spans two folds. For each fold: test = the fold; validation = about "
        f"{100 * confs.split.validation_fraction:.0f}% of the other components per class ("
        + ("the OOD threshold only: with final_fit each fold keeps its last epoch" if confs.final_fit
           else "best-epoch selection and the OOD threshold")
        + "); train = the rest. The colour baseline trains on the same train part.",
        f"- folds done: {len(done)} of {plan['folds']}" + ("" if len(done) == plan["folds"] else f" ({done}): PARTIAL"),
        f"- schedule per fold: {schedules}" + (" (MIXED across folds)" if len(ran) > 1 else "")
        + f" (release: {release.epochs} epochs, {release.max_train_minutes:g} minutes)"
        + (": SHORTER than the release, so these figures may understate it" if shorter else "")
        + "; what each fold actually ran is in the per-fold table",
        f"- training seed: {', '.join(map(str, seeds)) or plan['seed']}" + (" (MIXED across folds)" if len(seeds) > 1 else ""),
        f"- intervals: {S.CI_METHOD}",
        robustness_note(results) if results else "- robustness: no fold done yet",
        f"- trained with: {', '.join(trained_with)}",
        *(f"- note: {line}" for line in extra),
    ]
