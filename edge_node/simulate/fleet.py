"""N virtual nodes in one process, driven by one scheduler: results at a rate, Life at an interval, real OTA."""

from __future__ import annotations

import heapq
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts.confs import EdgeNodeConfs
from contracts.model_package import PackageLimits
from contracts.topics import check_segment
from edge_node.inference import ModelHolder, ServingSource
from edge_node.model_store import ModelStore
from edge_node.simulate.shared import SharedClassifiers, StandInView, SystemSampler, synthetic_images
from edge_node.simulate.shared_loop import SharedLoopLink, SharedMqttLoop
from edge_node.simulate.virtual_node import NodeEnvironment, NodeIdentity, VirtualNode

logger = logging.getLogger(__name__)


class FleetError(ValueError):
    """A fleet that cannot be built as asked (missing credentials, bad settings)."""


def fleet_device_ids(prefix: str, count: int) -> list[str]:
    """The device ids a fleet of count nodes uses: `{prefix}-0001` ... (provision these on the broker)."""
    ids = [f"{prefix}-{index:04d}" for index in range(1, count + 1)]
    for device_id in ids:
        check_segment(device_id, "device id")
    return ids


@dataclass(frozen=True)
class FleetSettings:
    """How many nodes, how busy, and where they connect."""

    nodes: int
    host: str
    port: int
    location: str
    zone: str
    work_dir: Path
    trusted_keys: Sequence[Ed25519PublicKey]
    initial_package: Path | None
    rate: float = 0.2
    life_interval_s: float = 1.0
    device_prefix: str = "sim"
    max_package_bytes: int = 256 * 1024 * 1024
    package_origin: str | None = None
    cheap_classifier: bool = False
    # Nodes serving one of these model versions answer every result uncertain: a bad release for health gates.
    uncertain_versions: tuple[str, ...] = ()
    edge: EdgeNodeConfs = field(default_factory=EdgeNodeConfs)
    tls: bool = False
    ca_file: str | None = None
    keepalive: int = 30
    workers: int = 4
    outbox_limit: int = 10_000


@dataclass(frozen=True)
class NodeStats:
    """One virtual node's figures."""

    device_id: str
    connected: bool
    model_version: str | None
    results_stored: int
    results_acked: int
    results_skipped: int
    life_sent: int
    outbox_depth: int
    update_states: tuple[str, ...]
    bytes_downloaded: int


class Fleet:
    """Start, run and stop N virtual nodes; `stats()` reads each node's figures at any time."""

    def __init__(
        self,
        settings: FleetSettings,
        credentials: Mapping[str, str],
        download_tokens: Mapping[str, str] | None = None,
    ) -> None:
        if settings.nodes < 1:
            raise FleetError(f"--nodes must be at least 1, not {settings.nodes}")
        if settings.rate < 0 or settings.life_interval_s <= 0:
            raise FleetError("the result rate must be >= 0 and the Life interval > 0")
        self.settings = settings
        ids = fleet_device_ids(settings.device_prefix, settings.nodes)
        if missing := [d for d in ids if d not in credentials]:
            raise FleetError(f"no broker password for {len(missing)} device(s), e.g. {missing[:3]}")
        tokens = download_tokens or {}
        self.classifiers = SharedClassifiers(settings.edge)
        settings.work_dir.mkdir(parents=True, exist_ok=True)
        limits = PackageLimits(max_total_bytes=2 * settings.max_package_bytes)
        self.mqtt_loop = SharedMqttLoop()
        env = NodeEnvironment(
            host=settings.host, port=settings.port, location=settings.location, zone=settings.zone,
            work_dir=settings.work_dir,
            store_factory=lambda root: ModelStore(root, settings.trusted_keys, limits),
            load_classifier=self.classifiers.load, system_metrics=SystemSampler(str(settings.work_dir)),
            max_package_bytes=settings.max_package_bytes, package_origin=settings.package_origin,
            outbox_limit=settings.outbox_limit, tls=settings.tls,
            ca_file=settings.ca_file, keepalive=settings.keepalive,
            classifier_view=self._view_factory(settings),
            link_factory=lambda link_settings, status: SharedLoopLink(link_settings, status, self.mqtt_loop),
        )
        self.nodes = [VirtualNode(NodeIdentity(d, credentials[d], tokens.get(d)), env) for d in ids]
        self._images = synthetic_images()
        self._pool = ThreadPoolExecutor(max(1, settings.workers), thread_name_prefix="fleet")
        self._stop = threading.Event()
        self._scheduler = threading.Thread(target=self._schedule, name="fleet-scheduler", daemon=True)
        self.late_ticks = 0
        self._busy = 0
        self._busy_lock = threading.Lock()

    @staticmethod
    def _view_factory(settings: FleetSettings) -> Callable[[ModelHolder], ServingSource] | None:
        """Stand-ins for the served classifier when the settings ask for any, else None (the real one serves)."""
        if not settings.cheap_classifier and not settings.uncertain_versions:
            return None
        versions = frozenset(settings.uncertain_versions)
        return lambda holder: StandInView(holder, settings.cheap_classifier, versions)

    def node(self, device_id: str) -> VirtualNode:
        """The virtual node with this id."""
        for node in self.nodes:
            if node.device_id == device_id:
                return node
        raise KeyError(device_id)

    def start(self, connect_timeout: float = 60.0) -> None:
        """Load models (each node self-tests its own), connect every node, then start producing."""
        initial = self.settings.initial_package
        self.mqtt_loop.start()
        list(self._pool.map(lambda node: node.start(initial), self.nodes))
        deadline = time.monotonic() + connect_timeout
        for node in self.nodes:
            if not node.link.wait_connected(max(0.0, deadline - time.monotonic())):
                logger.warning("%s has not connected yet", node.device_id)
        self._scheduler.start()
        logger.info("fleet of %d nodes running", len(self.nodes))

    def stop(self) -> None:
        """Stop producing, then stop every node (flush, OFFLINE, disconnect)."""
        self._stop.set()
        if self._scheduler.is_alive():
            self._scheduler.join(10)
        list(self._pool.map(lambda node: node.stop(), self.nodes))
        self._pool.shutdown(wait=True)
        self.mqtt_loop.stop()

    def run(self, duration_s: float) -> list[NodeStats]:
        """Start, run for duration_s (or until stop is requested), and stop; returns the stats just before stopping."""
        self.start()
        try:
            self._stop.wait(duration_s)
            return self.stats()
        finally:
            self.stop()

    def request_stop(self) -> None:
        """Ask run() to end early (signal handlers)."""
        self._stop.set()

    def stats(self) -> list[NodeStats]:
        """Per-node figures now."""
        return [
            NodeStats(
                device_id=n.device_id,
                connected=n.link.is_connected(),
                model_version=n.holder.model_version,
                results_stored=n.counters.results_stored,
                results_acked=n.sender.delivered,
                results_skipped=n.counters.results_skipped,
                life_sent=n.counters.life_sent,
                outbox_depth=n.outbox.depth(),
                update_states=tuple(u.state.value for u in list(n.counters.updates)),
                bytes_downloaded=n.ota.bytes_downloaded,
            )
            for n in self.nodes
        ]

    # scheduling ------------------------------------------------------------------------------

    def _schedule(self) -> None:
        """Keep every node's next result and Life on a heap; hand due work to the pool."""
        rng = random.Random(0)
        now = time.monotonic()
        heap: list[tuple[float, int, int, str]] = []
        result_period = 1.0 / self.settings.rate if self.settings.rate > 0 else None
        for index in range(len(self.nodes)):
            heap.append((now + rng.random() * self.settings.life_interval_s, index, 0, "life"))
            if result_period is not None:
                heap.append((now + rng.random() * result_period, index, 1, "result"))
        heapq.heapify(heap)
        while heap and not self._stop.is_set():
            due, index, order, kind = heap[0]
            wait = due - time.monotonic()
            if wait > 0:
                if self._stop.wait(min(wait, 0.5)):
                    return
                continue
            heapq.heappop(heap)
            period = self.settings.life_interval_s if kind == "life" else result_period
            if -wait > period:  # type: ignore[operator]
                self.late_ticks += 1
            heapq.heappush(heap, (due + period, index, order, kind))  # type: ignore[operator]
            self._pool.submit(self._tick, self.nodes[index], kind, index)

    def _tick(self, node: VirtualNode, kind: str, index: int) -> None:
        try:
            if kind == "life":
                node.publish_life()
            else:
                node.produce_result(self._images[(index + node.counters.results_stored) % len(self._images)])
        except Exception:  # noqa: BLE001 - one node's failure must not stop the fleet
            logger.exception("%s: %s tick failed", node.device_id, kind)
