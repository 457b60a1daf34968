"""One virtual node: its own identity, MQTT session, outbox, model store and OtaAgent, in a shared process."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from contracts.messages import (
    LifeMessage,
    UpdateMessage,
    to_bytes,
)
from contracts.topics import Channel, device_topic
from edge_node.channels import NodeChannels
from edge_node.delivery import OutboxSender
from edge_node.inference import Classifier, ModelHolder, ServingSource
from edge_node.model_store import InstalledModel, ModelStore
from edge_node.mqtt_link import LinkSettings, MqttLink
from edge_node.ota import OtaAgent
from edge_node.outbox import Outbox
from edge_node.sources import ClassificationPipeline, NoModelError
from edge_node.telemetry import InferenceStats, Warner

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeIdentity:
    """Who a virtual node is on the broker and to the package server."""

    device_id: str
    password: str
    download_token: str | None


@dataclass(frozen=True)
class NodeEnvironment:
    """What every virtual node of a fleet shares: broker, topic tree, keys, limits, loaders."""

    host: str
    port: int
    location: str
    zone: str
    work_dir: Path
    store_factory: Callable[[Path], ModelStore]
    load_classifier: Callable[[InstalledModel], Classifier]
    system_metrics: Callable[[], tuple[float, float, float]]
    max_package_bytes: int
    package_origin: str | None = None
    outbox_limit: int = 10_000
    tls: bool = False
    ca_file: str | None = None
    keepalive: int = 30
    classifier_view: Callable[[ModelHolder], ServingSource] | None = None
    link_factory: Callable[[LinkSettings, Callable[[bool, datetime], bytes]], MqttLink] = MqttLink


@dataclass
class NodeCounters:
    """What one virtual node did (read by the fleet's stats)."""

    results_stored: int = 0
    results_skipped: int = 0
    life_sent: int = 0
    updates: list[UpdateMessage] = field(default_factory=list)


class VirtualNode:
    """The node's moving parts minus real image sources: the fleet's scheduler asks it for results and Life."""

    def __init__(self, identity: NodeIdentity, env: NodeEnvironment) -> None:
        self.identity = identity
        self.device_id = identity.device_id
        self._env = env
        self._topic = functools.partial(device_topic, env.location, env.zone, identity.device_id)
        root = env.work_dir / identity.device_id
        self.counters = NodeCounters()
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self.holder = ModelHolder()
        self.stats = InferenceStats()
        self.channels = NodeChannels(identity.device_id, self._topic, self.holder, on_update=self._count_update)
        self.link = env.link_factory(self._link_settings(), self.channels.status_payload)
        self.outbox = Outbox(root / "outbox.db", env.outbox_limit)
        self.sender = OutboxSender(self.outbox, self.link)
        self.warner = Warner(identity.device_id, self.channels.publish_warning)
        self.store = env.store_factory(root / "models")
        self.ota = OtaAgent(
            self.store, self.holder, env.load_classifier, self.channels.publish_update, identity.device_id,
            root / "ota", identity.download_token, env.max_package_bytes,
            publish_warning=self.channels.publish_ota_warning, package_origin=env.package_origin,
        )
        view: ServingSource = env.classifier_view(self.holder) if env.classifier_view else self.holder
        self.pipeline = ClassificationPipeline(
            view, self.outbox, identity.device_id, self._topic(Channel.SENSORS), 50_000_000,
            on_result=self.stats.record,
        )
        self.channels.bind(self.link, self.warner, self.ota, self.publish_life, self.outbox,
                           replay=self.sender.request_replay)

    def _link_settings(self) -> LinkSettings:
        env, device = self._env, self.device_id
        return LinkSettings(
            host=env.host, port=env.port, client_id=device, username=device, password=self.identity.password,
            status_topic=self._topic(Channel.STATUS), tls=env.tls, ca_file=env.ca_file, keepalive=env.keepalive,
            subscriptions=(self._topic(Channel.COMMANDS),),
        )

    # lifecycle -------------------------------------------------------------------------------

    def start(self, initial_package: Path | None) -> None:
        """Serve a self-tested model, then connect and start draining the outbox."""
        self.ota.startup(initial_package)
        self.sender.start()
        self.link.start()

    def stop(self, flush_timeout: float = 2.0) -> None:
        """Stop OTA, flush what the broker will take, publish OFFLINE and close the outbox."""
        self.ota.stop()
        if self.link.is_connected():
            self.sender.flush(flush_timeout)
        self.sender.stop()
        self.link.stop(flush_timeout)
        self.outbox.close()

    # work the scheduler hands out ------------------------------------------------------------

    def produce_result(self, image: np.ndarray) -> bool:
        """Classify one image into the outbox; False when no model serves yet."""
        try:
            self.pipeline.process_pixels(image)
        except NoModelError:
            with self._lock:
                self.counters.results_skipped += 1
            return False
        with self._lock:
            self.counters.results_stored += 1
        return True

    def publish_life(self) -> bool:
        """Publish a Life message if connected."""
        if not self.link.is_connected():
            return False
        cpu, memory, disk = self._env.system_metrics()
        life = LifeMessage(
            device=self.device_id, cpu_percent=cpu, memory_percent=memory, disk_percent=disk,
            uptime_s=time.monotonic() - self._started, inference_count=self.stats.count,
            inference_ms_mean=self.stats.mean_ms(), outbox_depth=self.outbox.depth(),
            model_version=self.holder.model_version, **self.holder.serving_info(),
        )
        self.link.publish(self._topic(Channel.LIFE), to_bytes(life), qos=1)
        with self._lock:
            self.counters.life_sent += 1
        return True

    # MQTT ------------------------------------------------------------------------------------

    def _count_update(self, update: UpdateMessage) -> None:
        with self._lock:
            self.counters.updates.append(update)
