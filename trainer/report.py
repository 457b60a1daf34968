"""Plots and the Markdown report of a trained or packaged model."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import itertools

import matplotlib.pyplot as plt
import numpy as np

log = logging.getLogger(__name__)


def plot_confusion(matrix: list[list[int]], labels: list[str], title: str, path: Path) -> Path:
    """Confusion matrix heat map with counts."""
    data = np.array(matrix)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(data, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for (r, c), value in np.ndenumerate(data):
        ax.text(c, r, str(value), ha="center", va="center", color="white" if value > data.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_history(history: dict[str, list[float]], path: Path) -> Path:
    """Loss and accuracy per epoch, training and validation."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + key in history:
                ax.plot(range(1, len(history[prefix + key]) + 1), history[prefix + key], style, label=prefix + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_robustness(table: dict[str, dict[str, float]], path: Path) -> Path:
    """Grouped bars: accuracy of each predictor under each shift."""
    cases = list(table)
    who = list(next(iter(table.values())))
    fig, ax = plt.subplots(figsize=(10, 3.8))
    width = 0.8 / max(len(who), 1)
    for i, name in enumerate(who):
        ax.bar(np.arange(len(cases)) + i * width, [table[c][name] for c in cases], width, label=name)
    ax.set_xticks(np.arange(len(cases)) + width * (len(who) - 1) / 2, cases, rotation=30, ha="right")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_reliability(probs: np.ndarray, labels: np.ndarray, path: Path, bins: int = 10) -> Path:
    """Accuracy against confidence per bin (a calibrated model follows the diagonal)."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    centres, accs = [], []
    for lo, hi in itertools.pairwise(edges):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            centres.append(conf[sel].mean())
            accs.append(correct[sel].mean())
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.plot(centres, accs, "o-")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("reliability")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def metrics_table(report: dict[str, Any]) -> list[str]:
    """Markdown rows of per-class precision, recall, F1 and support."""
    rows = ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for name, m in report["per_class"].items():
        rows.append(f"| {name} | {_pct(m['precision'])} | {_pct(m['recall'])} | {_pct(m['f1'])} | {m['support']} |")
    return rows


def robustness_rows(table: dict[str, dict[str, float]]) -> list[str]:
    """Markdown rows of the robustness table, with whether the CNN beats the baseline."""
    who = list(next(iter(table.values())))
    rows = ["| condition | " + " | ".join(who) + " | CNN ahead |", "|---|" + "---:|" * (len(who) + 1)]
    for case, values in table.items():
        ahead = "yes" if values[who[0]] > values[who[-1]] else "no"
        rows.append(f"| {case} | " + " | ".join(_pct(values[w]) for w in who) + f" | {ahead} |")
    return rows


def write_json(path: Path, data: Any) -> None:
    """Write data as JSON atomically: a reader sees the old file or the whole new one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def write_markdown(path: Path, title: str, sections: list[tuple[str, list[str]]]) -> Path:
    """A Markdown file from (heading, lines) sections."""
    lines = [f"# {title}", ""]
    for heading, body in sections:
        lines += [f"## {heading}", "", *body, ""]
    path.write_text("\n".join(lines))
    return path
