"""What the demo watches while it runs: results stored per node, nodes that cannot serve or stop, and why."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SERVE_WITHIN_S = 60.0
PROGRESS_EVERY_S = 5.0
MODEL_WARNINGS = ("NO_MODEL", "SELF_TEST_FAILED", "MODEL_ERROR")
# Log lines that say why a node cannot serve, most telling first.
LOG_REASONS = (re.compile(r"cannot serve.*|refused.*|not trusted.*", re.I), re.compile(r"(ERROR|CRITICAL).*"))


class NotServing(RuntimeError):
    """One or more nodes serve nothing; the message names each and its reason."""


@dataclass(frozen=True)
class NodeView:
    """What the dashboard's database says about one node."""

    state: str | None = None
    reason: str | None = None
    stored: int = 0
    classified: int = 0
    warning: str | None = None


def read_views(db_path: Path, nodes: list[str]) -> dict[str, NodeView] | None:
    """Each node's state, reason, stored results and latest model warning; None while the database is unreadable."""
    if not db_path.exists():
        return None
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=2) as db:
            stored = dict(db.execute("SELECT device_id, COUNT(*) FROM classifications GROUP BY device_id").fetchall())
            devices = {row[0]: row[1:] for row in db.execute(
                "SELECT id, state, state_reason, inference_count FROM devices").fetchall()}
            marks = ",".join("?" * len(MODEL_WARNINGS))
            warnings: dict[str, str] = {}
            for device_id, message in db.execute(
                f"SELECT device_id, message FROM warnings WHERE code IN ({marks}) ORDER BY sent_at", MODEL_WARNINGS
            ).fetchall():
                warnings[device_id] = message  # ordered by time: the latest wins
    except sqlite3.Error:
        return None
    views = {}
    for node in nodes:
        state, reason, count = devices.get(node, (None, None, None))
        views[node] = NodeView(state, reason, int(stored.get(node, 0)), int(count or 0), warnings.get(node))
    return views


def reason_from_log(log: Path) -> str | None:
    """The most telling recent line of a node's log about why it cannot serve."""
    try:
        lines = log.read_text(errors="replace").splitlines()[-400:]
    except OSError:
        return None
    for pattern in LOG_REASONS:
        for line in reversed(lines):
            found = pattern.search(line)
            if found:
                return found.group(0).strip()[:500]
    return None


@dataclass
class Monitor:
    """Prints a running count of stored results; fails loudly when a node serves nothing; survives a node exiting."""

    db_path: Path
    nodes: dict[str, subprocess.Popen[bytes]]
    log_of: Callable[[str], Path]
    expect_results: bool
    expected: int = 0
    started: float = field(default_factory=time.monotonic)
    views: dict[str, NodeView] = field(default_factory=dict)
    served: set[str] = field(default_factory=set)
    gone: dict[str, str] = field(default_factory=dict)
    last_print: float = 0.0

    def alive(self) -> list[str]:
        """Nodes whose process still runs."""
        return [name for name in self.nodes if name not in self.gone]

    def reason(self, node: str) -> str:
        """Why a node serves nothing: its NO_MODEL Status, its latest model warning, else its log."""
        view = self.views.get(node, NodeView())
        if view.state == "NO_MODEL" and view.reason:
            return view.reason
        return view.warning or reason_from_log(self.log_of(node)) or f"no reason reported; see {self.log_of(node)}"

    def check(self) -> None:
        """One look: record exits, print progress, raise NotServing for nodes that cannot serve."""
        now = time.monotonic()
        for name, process in self.nodes.items():
            if name not in self.gone and process.poll() is not None:
                self.gone[name] = f"exited with code {process.returncode}: {self.reason(name)}"
                print(f"  ! {name} {self.gone[name]} (log: {self.log_of(name)}); the other nodes keep running", flush=True)
        views = read_views(self.db_path, list(self.nodes))
        if views is not None:
            self.views = views
            self.served |= {name for name, view in views.items() if view.stored > 0}
        failing = [name for name in self.nodes if name not in self.served and (
            self.views.get(name, NodeView()).state == "NO_MODEL" or name in self.gone
            or (self.expect_results and now - self.started > SERVE_WITHIN_S))]
        if failing:
            raise NotServing("\n".join(f"  {name} serves nothing: {self.reason(name)}" for name in failing))
        if now - self.last_print >= PROGRESS_EVERY_S:
            self.last_print = now
            per_node = ", ".join(f"{name}: {self.views.get(name, NodeView()).stored}" for name in self.nodes)
            total = sum(view.stored for view in self.views.values())
            print(f"  [{now - self.started:5.0f} s] {total} classifications stored ({per_node})", flush=True)

    def summary(self) -> dict[str, int]:
        """The closing figures, from the database as the stopped stack left it."""
        views = read_views(self.db_path, list(self.nodes)) or self.views
        stored = sum(view.stored for view in views.values())
        # Life reports lag by up to life_interval_s; a stored result was certainly classified.
        classified = max(stored, sum(view.classified for view in views.values()))
        # States from the last live look: once stopped, every node reads OFFLINE.
        serving = [name for name in self.alive() if self.views.get(name, NodeView()).state not in (None, "NO_MODEL")
                   and (views.get(name, NodeView()).stored > 0 or not self.expect_results)]
        nodes = max(self.expected, len(self.nodes))
        return {"classified": classified, "stored": stored, "nodes_serving": len(serving), "nodes": nodes}
