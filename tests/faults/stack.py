"""The running system of a fault scenario: broker, ingest process on SQLite, edge node processes, images, tallies."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from broker_harness import BrokerHandle, MessageCollector
from contracts.messages import NodeState, StatusMessage, from_bytes
from support.tiny_package import CLASSES, class_image
from support.waiting import wait_until
from tests.edge_node.node_harness import NodeProcess, wait_online, write_confs

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Scale:
    """Sizes of the scenarios: `ci` keeps `make test` short, `full` is what `make faults` runs."""

    name: str
    images: int
    cut_s: float
    ota_pad_bytes: int

    @classmethod
    def named(cls, name: str) -> "Scale":
        """The scale called name (ci or full)."""
        if name == "full":
            return cls("full", images=120, cut_s=30.0, ota_pad_bytes=40_000_000)
        return cls("ci", images=30, cut_s=10.0, ota_pad_bytes=15_000_000)


@dataclass
class Tally:
    """One scenario's figures, by image sha256."""

    produced: int
    stored: int
    duplicates: int
    lost: int
    missing: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, produced: set[str], rows_per_image: dict[str, int]) -> "Tally":
        """Compare the images fed with the classifications the dashboard stored."""
        stored = {sha for sha in produced if rows_per_image.get(sha, 0) > 0}
        duplicates = sum(rows_per_image.get(sha, 0) - 1 for sha in stored)
        missing = sorted(produced - stored)
        return cls(len(produced), len(stored), duplicates, len(missing), missing)

    def as_dict(self) -> dict[str, int]:
        """The four figures of the JSON line."""
        return {"produced": self.produced, "stored": self.stored, "duplicates": self.duplicates, "lost": self.lost}


def jpeg(seed: int) -> bytes:
    """A distinct JPEG the tiny model can classify (each seed gives other pixels, so another sha256)."""
    buffer = io.BytesIO()
    Image.fromarray(class_image(CLASSES[seed % len(CLASSES)], seed=seed)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


class ImageFeed:
    """Writes distinct images into a node's inbox (write, then rename: the node sees them complete)."""

    def __init__(self, first_seed: int = 0) -> None:
        self._next = first_seed
        self.produced: set[str] = set()

    def feed(self, inbox: Path, count: int, pause_s: float = 0.0) -> set[str]:
        """Drop count new images into inbox; returns their hashes."""
        inbox.mkdir(parents=True, exist_ok=True)
        batch = set()
        for _ in range(count):
            data = jpeg(self._next)
            sha = hashlib.sha256(data).hexdigest()
            part = inbox / f"img{self._next:05d}.jpg.part"
            part.write_bytes(data)
            part.rename(inbox / f"img{self._next:05d}.jpg")
            self._next += 1
            batch.add(sha)
            if pause_s:
                time.sleep(pause_s)
        self.produced |= batch
        return batch


class FaultStack:
    """One scenario's system; every process it starts is stopped by PID in `close()`."""

    def __init__(self, root: Path, broker: BrokerHandle) -> None:
        self.root = root
        self.broker = broker
        self.db_path = root / "dashboard.db"
        self.ingest: subprocess.Popen[bytes] | None = None
        self.ingest_log = root / "ingest.log"
        self.nodes: list[NodeProcess] = []
        self.watch = self._watch()
        self.ingest_confs = self._write_ingest_confs()

    def _watch(self) -> MessageCollector:
        """A subscriber to every Status (the ingest's and the nodes')."""
        return self.broker.collector(
            self.broker.dashboard_user, [self.broker.app_topic(), f"{self.broker.location}/Devices/+/+/Status"]
        )

    def kill_broker_and_restart(self, down_s: float = 1.0) -> None:
        """SIGKILL the broker, wait down_s, start it on the same ports and data, and watch again."""
        self.broker.kill()
        time.sleep(down_s)
        self.broker.start()
        self.watch = self._watch()

    def _write_ingest_confs(self) -> Path:
        raw = json.loads((REPO / "confs.json").read_text())
        raw["mqtt"].update(host=self.broker.host, port=self.broker.port, tls=False, ca_file=None, password_file=None)
        raw["identity"].update(location=self.broker.location, zone=self.broker.zone)
        raw["dashboard"].update(
            database_url=f"sqlite:///{self.db_path}", secret_key_file=str(self.root / "secret_key"),
            package_dir=str(self.root / "packages"), app_id=self.broker.dashboard_app,
        )
        path = self.root / "ingest-confs.json"
        path.write_text(json.dumps(raw, indent=2))
        return path

    # ingest ----------------------------------------------------------------------------------

    def use_public_url(self, url: str) -> None:
        """Point the dashboard's public_url (where nodes download packages) at url for the next ingest start."""
        raw = json.loads(self.ingest_confs.read_text())
        raw["dashboard"]["public_url"] = url
        self.ingest_confs.write_text(json.dumps(raw, indent=2))

    def start_ingest(self, timeout: float = 60.0, engine: bool = False) -> None:
        """Start `python -m dashboard.ingest` (with the rollout engine if asked) and wait until it has subscribed."""
        seen = len(self.watch.messages)
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY")}
        env["MQTT_PASSWORD"] = self.broker.credentials[self.broker.dashboard_user]
        with self.ingest_log.open("ab") as log:
            self.ingest = subprocess.Popen(
                [sys.executable, "-m", "dashboard.ingest", "--confs", str(self.ingest_confs),
                 *([] if engine else ["--no-engine"]), "--flush-ms", "50"],
                cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        app_topic = self.broker.app_topic()

        def online() -> bool:
            if self.ingest is None or self.ingest.poll() is not None:
                raise RuntimeError(f"ingest exited:\n{self.logs()}")
            return any(m.topic == app_topic and _state(m.payload) is NodeState.ONLINE for m in self.watch.messages[seen:])

        wait_until(online, timeout, "the ingest to come online", self.logs)

    def kill_ingest(self) -> None:
        """SIGKILL the ingest process and reap it."""
        if self.ingest is not None and self.ingest.poll() is None:
            self.ingest.send_signal(signal.SIGKILL)
            self.ingest.wait(10)

    def stop_ingest(self) -> int:
        """SIGTERM the ingest and return its exit code."""
        if self.ingest is None or self.ingest.poll() is not None:
            return self.ingest.returncode if self.ingest is not None else 0
        self.ingest.send_signal(signal.SIGTERM)
        try:
            return self.ingest.wait(30)
        except subprocess.TimeoutExpired:
            self.ingest.kill()
            return self.ingest.wait(10)

    # nodes -------------------------------------------------------------------------------------

    def add_node(self, device: str, package: Path, public_key: str, port: int | None = None, **edge: Any) -> NodeProcess:
        """A node process for device (not started); port points it at a proxy instead of the broker."""
        directory = self.root / device
        directory.mkdir(exist_ok=True)
        confs = write_confs(directory, self.broker, package, public_key, device=device, **edge)
        if port is not None:
            raw = json.loads(confs.read_text())
            raw["mqtt"]["port"] = port
            confs.write_text(json.dumps(raw, indent=2))
        node = NodeProcess(confs, self.broker.credentials[device])
        self.nodes.append(node)
        return node

    def start_node(self, node: NodeProcess, timeout: float = 60.0) -> None:
        """Start a node and wait for its ONLINE status."""
        seen = len(self.watch.messages)
        node.start()
        status = self.broker.topic(node.confs["edge_node"]["device_id"], "Status")
        wait_online(self.watch, status, node, after=seen, timeout=timeout)

    # figures -----------------------------------------------------------------------------------

    def rows_per_image(self) -> dict[str, int]:
        """Stored classification rows per image sha256."""
        if not self.db_path.exists():
            return {}
        with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10) as db:
            try:
                rows = db.execute("SELECT image_sha256, COUNT(*) FROM classifications GROUP BY image_sha256").fetchall()
            except sqlite3.OperationalError:
                return {}
        return {sha: int(count) for sha, count in rows}

    def versions_of(self, hashes: set[str]) -> set[str]:
        """Model versions of the stored classifications of these images."""
        with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10) as db:
            rows = db.execute("SELECT image_sha256, model_version FROM classifications").fetchall()
        return {version for sha, version in rows if sha in hashes}

    def stored(self, hashes: set[str]) -> int:
        """How many of hashes have at least one stored classification."""
        rows = self.rows_per_image()
        return sum(1 for sha in hashes if rows.get(sha, 0) > 0)

    def wait_stored(self, hashes: set[str], timeout: float) -> None:
        """Wait until every image in hashes is stored."""
        wait_until(lambda: self.stored(hashes) == len(hashes), timeout,
                   f"{len(hashes)} images stored (have {self.stored(hashes)})", self.logs)

    def tally(self, produced: set[str], settle_s: float = 1.0) -> Tally:
        """Figures once late duplicates have had settle_s to arrive."""
        time.sleep(settle_s)
        return Tally.of(produced, self.rows_per_image())

    def logs(self) -> str:
        """The tails of the ingest's and every node's logs."""
        parts = [f"--- ingest\n{_tail(self.ingest_log)}"]
        parts += [f"--- {node.confs_path.parent.name} ({_exit(node)})\n{node.log()[-3000:]}" for node in self.nodes]
        return "\n".join(parts)

    def close(self) -> None:
        """Stop every node and the ingest (by PID)."""
        for node in self.nodes:
            node.kill()
        self.stop_ingest()


def _state(payload: bytes) -> NodeState | None:
    try:
        message = from_bytes(payload)
    except Exception:  # noqa: BLE001 - anything unparsable is simply not a state
        return None
    return message.state if isinstance(message, StatusMessage) else None


def _exit(node: NodeProcess) -> str:
    """Whether a node process runs, or how it ended (a negative code is the signal that killed it)."""
    code = node.process.poll() if node.process is not None else None
    return "running" if code is None else f"exited with {code}"


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""
