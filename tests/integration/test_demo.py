"""`make demo` brings up the whole system and cannot fail silently: a running count, a node that cannot serve fails it
with the node's reason, a node that exits is reported while the rest keep going, and one JSON line of figures ends it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from contracts.model_package import generate_private_key, public_key_text
from support.tiny_package import CLASSES, class_image, make_tiny_package

ROOT = Path(__file__).resolve().parents[2]


def make_inputs(tmp_path: Path, break_selftest: bool = False) -> tuple[Path, Path, Path]:
    """A confs.json trusting a fresh key, a tiny package signed with it, and a folder of class images."""
    key = generate_private_key()
    package = make_tiny_package(tmp_path / "pkg", key, "1.0.0", break_selftest=break_selftest)
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


@pytest.fixture
def demo_inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Inputs of a demo whose nodes serve."""
    return make_inputs(tmp_path)


def demo_argv(inputs: tuple[Path, Path, Path], state: Path, duration: float) -> list[str]:
    """The demo's command line over these inputs."""
    confs, package, data = inputs
    return [sys.executable, "scripts/demo.py", "--confs", str(confs), "--package", str(package), "--data", str(data),
            "--state", str(state), "--interval", "1", "--duration", str(duration)]


def summary(stdout: str) -> dict[str, int]:
    """The JSON line the demo ends with."""
    last = stdout.strip().splitlines()[-1]
    figures = json.loads(last)
    assert set(figures) == {"classified", "stored", "nodes_serving", "nodes"}, last
    return figures


@contextmanager
def running_demo(inputs: tuple[Path, Path, Path], state: Path, duration: float, **popen: Any) -> Iterator[subprocess.Popen[str]]:
    """The demo as a process whose output the test reads line by line; killed if still running at the end."""
    demo = subprocess.Popen(demo_argv(inputs, state, duration), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}, **popen)
    try:
        yield demo
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()


def read_until(demo: subprocess.Popen[str], reached: Callable[[str], bool], what: str) -> list[str]:
    """The demo's output lines up to the first for which reached() holds; fails the test if it ends first."""
    assert demo.stdout is not None
    lines = []
    for line in demo.stdout:
        lines.append(line)
        if reached(line):
            return lines
    pytest.fail(f"{what}:\n" + "".join(lines))


def no_leftovers(state: Path) -> None:
    """No process of this demo is still running."""
    leftover = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True).stdout.split()
    assert leftover == [], f"processes left running: {leftover}"


@pytest.mark.timeout(240)
def test_demo_delivers_results_and_telemetry_then_stops_cleanly(tmp_path: Path, demo_inputs) -> None:  # type: ignore[no-untyped-def]
    state = tmp_path / "state"
    result = subprocess.run(
        demo_argv(demo_inputs, state, 40), cwd=ROOT, capture_output=True, text=True, timeout=220,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "login: admin / " in result.stdout and "Everything stopped." in result.stdout
    assert "classifications stored (edge-node-1: " in result.stdout, result.stdout
    with sqlite3.connect(state / "dashboard.db") as db:
        counts = {t: db.execute(f"select count(*) from {t}").fetchone()[0] for t in ("classifications", "telemetry")}
    assert counts["classifications"] >= 10, counts
    assert counts["telemetry"] >= 2, counts
    figures = summary(result.stdout)
    assert figures["stored"] == counts["classifications"] and figures["classified"] >= figures["stored"]
    assert figures["nodes_serving"] == figures["nodes"] == 2, figures
    no_leftovers(state)


@pytest.mark.timeout(240)
def test_demo_fails_naming_each_node_that_cannot_serve_and_why(tmp_path: Path) -> None:
    state = tmp_path / "state"
    started = time.monotonic()
    result = subprocess.run(
        demo_argv(make_inputs(tmp_path, break_selftest=True), state, 120), cwd=ROOT, capture_output=True, text=True,
        timeout=220, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode != 0, result.stdout + result.stderr
    assert time.monotonic() - started < 110, "the demo must not wait out its duration once a node cannot serve"
    assert "a node cannot serve the model" in result.stderr, result.stderr
    failing = [line for line in result.stderr.splitlines() if "serves nothing:" in line]
    assert failing and all("self-test" in line or "outputs differ" in line for line in failing), result.stderr
    figures = summary(result.stdout)
    assert (figures["stored"], figures["nodes_serving"], figures["nodes"]) == (0, 0, 2), figures
    no_leftovers(state)


@pytest.mark.timeout(240)
def test_demo_survives_a_node_exiting_and_says_which_and_why(tmp_path: Path, demo_inputs) -> None:  # type: ignore[no-untyped-def]
    state = tmp_path / "state"
    with running_demo(demo_inputs, state, 45) as demo:
        lines = read_until(
            demo, lambda line: "edge-node-2: " in line and "(edge-node-1: 0," not in line
            and not line.rstrip().endswith(": 0)"), "no progress line with both nodes serving")
        node = subprocess.run(["pgrep", "-f", str(state / "edge-node-2" / "confs.json")], capture_output=True, text=True)
        os.kill(int(node.stdout.split()[0]), signal.SIGKILL)
        out, err = demo.communicate(timeout=200)
    stdout = "".join(lines) + out
    assert demo.returncode == 1, stdout + err
    assert "edge-node-2 exited with code -9" in stdout and "the other nodes keep running" in stdout, stdout
    after_exit = stdout.split("edge-node-2 exited", 1)[1]
    assert "classifications stored" in after_exit, "the demo kept counting after the node stopped"
    figures = summary(stdout)
    assert (figures["nodes_serving"], figures["nodes"]) == (1, 2) and figures["stored"] > 0, figures
    no_leftovers(state)


@pytest.mark.timeout(240)
def test_ctrl_c_stops_everything_even_when_the_demo_was_started_with_sigint_ignored(tmp_path: Path, demo_inputs) -> None:  # type: ignore[no-untyped-def]
    # What a shell does to a command started in the background: CI, `nohup make demo &`.
    state = tmp_path / "state"
    with running_demo(demo_inputs, state, 200, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) as demo:
        lines = read_until(demo, lambda line: "classifications stored" in line, "the demo never started counting")
        demo.send_signal(signal.SIGINT)
        out, err = demo.communicate(timeout=60)
    stdout = "".join(lines) + out
    assert "Stopping (SIGINT):" in stdout and "Everything stopped." in stdout, stdout + err
    assert summary(stdout)["nodes"] == 2
    no_leftovers(state)
