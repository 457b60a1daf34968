"""`make demo` brings up the whole system: results and telemetry reach the dashboard's database, and it stops cleanly."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from contracts.model_package import generate_private_key, public_key_text
from support.tiny_package import CLASSES, class_image, make_tiny_package

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo_inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A confs.json trusting a fresh key, a tiny package signed with it, and a folder of class images."""
    key = generate_private_key()
    package = make_tiny_package(tmp_path / "pkg", key, "1.0.0")
    confs = json.loads((ROOT / "confs.json").read_text())
    confs["ota"]["trusted_public_keys"] = [public_key_text(key)]
    confs_path = tmp_path / "confs.json"
    confs_path.write_text(json.dumps(confs))
    data = tmp_path / "images"
    for label in CLASSES:
        (data / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(class_image(label, seed=i)).save(data / label / f"{label}-{i}.png")
    return confs_path, package, data


@pytest.mark.timeout(240)
def test_demo_delivers_results_and_telemetry_then_stops_cleanly(tmp_path: Path, demo_inputs) -> None:  # type: ignore[no-untyped-def]
    confs, package, data = demo_inputs
    state = tmp_path / "state"
    result = subprocess.run(
        [sys.executable, "scripts/demo.py", "--confs", str(confs), "--package", str(package), "--data", str(data),
         "--state", str(state), "--interval", "1", "--duration", "40"],
        cwd=ROOT, capture_output=True, text=True, timeout=220, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "login: admin / " in result.stdout and "Everything stopped." in result.stdout
    with sqlite3.connect(state / "dashboard.db") as db:
        counts = {t: db.execute(f"select count(*) from {t}").fetchone()[0] for t in ("classifications", "telemetry")}
    assert counts["classifications"] >= 10, counts
    assert counts["telemetry"] >= 2, counts
    leftover = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True).stdout.split()
    assert leftover == [], f"processes left running: {leftover}"
