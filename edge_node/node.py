"""Builds the edge node from confs.json and runs it: model, MQTT link, outbox, sources, telemetry, commands."""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from contracts.confs import Confs, read_secret
from contracts.messages import (
    Severity,
    WarningCode,
    to_bytes,
)
from contracts.model_package import PackageLimits, parse_public_key
from contracts.topics import Channel, device_topic
from edge_node.channels import NodeChannels
from edge_node.delivery import OutboxSender
from edge_node.images import ImageStore
from edge_node.inference import Classifier, ModelHolder, Prediction, load_classifier
from edge_node.model_store import InstalledModel, ModelStore
from edge_node.metrics import NodeMetrics
from edge_node.mqtt_link import LinkSettings, MqttLink
from edge_node.ota import OtaAgent
from edge_node.outbox import Outbox
from edge_node.sources import ClassificationPipeline
from edge_node.sources.camera import CameraSource
from edge_node.sources.folder import FolderSource
from edge_node.sources.get_routes import GetRoutes
from edge_node.sources.http_api import InferenceServer
from edge_node.state_files import private_dir, warn_if_loose
from edge_node.telemetry import InferenceStats, Telemetry, Warner

logger = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 10.0


class NodeSetupError(RuntimeError):
    """The configuration cannot make a working node; the message names the key."""


@dataclass(frozen=True)
class Secrets:
    """Secrets read from the environment or git-ignored files, never from confs.json."""

    mqtt_password: str | None
    http_token: str | None
    images_token: str | None = None
    metrics_token: str | None = None

    @classmethod
    def from_confs(cls, confs: Confs) -> "Secrets":
        """MQTT_PASSWORD, EDGE_TOKEN, DASHBOARD_IMAGE_TOKEN and METRICS_TOKEN, or the files confs names."""
        edge = confs.edge_node
        return cls(
            read_secret("MQTT_PASSWORD", confs.mqtt.password_file),
            read_secret("EDGE_TOKEN", edge.token_file),
            read_secret("DASHBOARD_IMAGE_TOKEN", edge.images.dashboard_token_file),
            read_secret("METRICS_TOKEN", edge.metrics.token_file),
        )


def check_secrets(confs: Confs, secrets: Secrets) -> list[str]:
    """Problems that keep a node from starting, each naming the key to fix."""
    problems = []
    if secrets.mqtt_password is None:
        problems.append("mqtt.password_file: no broker password (set MQTT_PASSWORD or point password_file at a file)")
    if confs.edge_node.inputs.http and secrets.http_token is None:
        problems.append(
            "edge_node.token_file: inputs.http is on but no bearer token is set (set EDGE_TOKEN or token_file)"
        )
    tokens = [t for t in (secrets.http_token, secrets.images_token, secrets.metrics_token) if t]
    if len(set(tokens)) != len(tokens):
        problems.append("edge_node.images.dashboard_token_file: the inference, image and metrics tokens must differ")
    if confs.mqtt.tls and not confs.mqtt.ca_file:
        problems.append("mqtt.ca_file: tls is on but no CA certificate is given")
    if confs.ota.ca_file and not Path(confs.ota.ca_file).is_file():
        problems.append(f"ota.ca_file: {confs.ota.ca_file} does not exist")
    if not confs.ota.trusted_public_keys:
        problems.append("ota.trusted_public_keys: empty, so every model package would be refused")
    return problems


class EdgeNode:
    """One running node; `start()` brings it up, `shutdown()` takes it down cleanly."""

    def __init__(self, confs: Confs, secrets: Secrets) -> None:
        if problems := check_secrets(confs, secrets):
            raise NodeSetupError("\n".join(problems))
        self.confs = confs
        edge, ident = confs.edge_node, confs.identity
        self.device_id = edge.device_id
        self._topic = functools.partial(device_topic, ident.location, ident.zone, edge.device_id)
        self._stopped = threading.Event()
        self.holder = ModelHolder()
        self.stats = InferenceStats()
        self.channels = NodeChannels(self.device_id, self._topic, self.holder, commander=confs.dashboard.app_id)
        self.link = MqttLink(self._link_settings(secrets), self.channels.status_payload)
        self.warner = Warner(self.device_id, self.channels.publish_warning)
        self.outbox = Outbox(Path(edge.outbox_path), edge.outbox_limit, on_overflow=self._on_overflow)
        self.sender = OutboxSender(self.outbox, self.link)
        self.telemetry = Telemetry(
            self.device_id, self.stats, self.warner, Path(edge.outbox_path).parent, self.outbox.depth,
            lambda: self.holder.model_version, serving_info=self.holder.serving_info,
        )
        self.metrics = NodeMetrics(self.device_id, self.outbox.depth, lambda: self.holder.current() is not None)
        self.images = ImageStore(Path(edge.images.dir), edge.images.retention_s)
        self.pipeline = ClassificationPipeline(
            self.holder, self.outbox, self.device_id, self._topic(Channel.SENSORS), edge.max_image_pixels,
            on_result=self._on_result, on_rejected=self._on_rejected, images=self.images,
        )
        store_root = Path(edge.model_store)
        private_dir(store_root)
        private_dir(store_root.parent / "ota")
        self.store = ModelStore(
            store_root, [parse_public_key(k) for k in confs.ota.trusted_public_keys],
            PackageLimits(max_total_bytes=2 * confs.ota.max_package_bytes),
        )
        self.ota = OtaAgent(
            self.store, self.holder, self._load_classifier, self.channels.publish_update, self.device_id, store_root.parent / "ota",
            secrets.http_token, confs.ota.max_package_bytes, publish_warning=self.channels.publish_ota_warning,
            package_origin=confs.dashboard.public_url, ca_file=confs.ota.ca_file,
        )
        self.sources = self._build_sources(secrets)
        self.channels.bind(self.link, self.warner, self.ota, self._publish_life, self.outbox,
                           replay=self.sender.request_replay)
        self._life_thread = threading.Thread(target=self._life_loop, name="life", daemon=True)

    def _link_settings(self, secrets: Secrets) -> LinkSettings:
        mqtt, device = self.confs.mqtt, self.device_id
        return LinkSettings(
            host=mqtt.host, port=mqtt.port, client_id=device, username=device, password=secrets.mqtt_password,
            status_topic=self._topic(Channel.STATUS), tls=mqtt.tls, ca_file=mqtt.ca_file, keepalive=mqtt.keepalive,
            subscriptions=(self._topic(Channel.COMMANDS),),
        )

    def _build_sources(self, secrets: Secrets) -> list[FolderSource | InferenceServer | CameraSource]:
        edge, inputs = self.confs.edge_node, self.confs.edge_node.inputs
        sources: list[FolderSource | InferenceServer | CameraSource] = []
        if inputs.watch_dir:
            sources.append(FolderSource(Path(inputs.watch_dir), self.pipeline))
        if inputs.http and secrets.http_token:
            routes = GetRoutes(self.images, secrets.images_token, self.metrics.exposition, secrets.metrics_token)
            sources.append(
                InferenceServer(self.pipeline, edge.http_host, edge.http_port, secrets.http_token, get_routes=routes)
            )
        if inputs.camera:
            sources.append(CameraSource(inputs.camera, self.pipeline, inputs.camera_interval_s))
        return sources

    def _load_classifier(self, model: InstalledModel) -> Classifier:
        """The model on the configured runtime and precision (its module imported on first use)."""
        return load_classifier(model.path, model.manifest, self.confs.edge_node)

    # lifecycle -----------------------------------------------------------------------------

    def state_paths(self) -> list[Path]:
        """Everything of the node's own that other local users must not read: state folders, outbox, secrets."""
        edge, outbox = self.confs.edge_node, Path(self.confs.edge_node.outbox_path)
        store_root = Path(edge.model_store)
        paths = [outbox.parent, outbox, *(outbox.with_name(outbox.name + s) for s in ("-wal", "-shm"))]
        paths += [store_root, store_root.parent / "ota", store_root.parent / "ota" / "ota_journal.json"]
        paths += [Path(p) for p in (edge.token_file, self.confs.mqtt.password_file) if p]
        paths += [Path(p) for p in (edge.images.dashboard_token_file, edge.metrics.token_file) if p]
        paths += [Path(edge.images.dir)] if self.images.enabled else []
        return paths

    def start(self) -> None:
        """Load the best model, connect, and start every source and the telemetry loop."""
        warn_if_loose(self.state_paths())
        initial = self.confs.edge_node.initial_package
        self.ota.startup(Path(initial) if initial else None)
        if self.holder.current() is None:
            logger.error("no model to serve: inputs wait until a model_update arrives")
        self.sender.start()
        self.link.start()
        for source in self.sources:
            source.start()
        self._life_thread.start()
        logger.info("edge node %s started (model %s)", self.device_id, self.holder.model_version)

    def shutdown(self) -> None:
        """Stop inputs, flush the outbox, publish OFFLINE and disconnect."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        for source in self.sources:
            source.stop()
        self.ota.stop()
        if self.link.is_connected() and not self.sender.flush(FLUSH_TIMEOUT_S):
            logger.warning("%d results still unacknowledged; they are kept for the next start", self.outbox.depth())
        self.sender.stop()
        self.link.stop()
        self._life_thread.join(5)
        self.outbox.close()
        logger.info("edge node %s stopped", self.device_id)

    # MQTT ----------------------------------------------------------------------------------

    def _on_overflow(self, dropped: int) -> None:
        self.warner.warn(
            WarningCode.OUTBOX_OVERFLOW,
            f"outbox full: dropped the {dropped} oldest unsent results",
            Severity.CRITICAL,
            {"dropped": dropped, "dropped_total": self.outbox.dropped_total, "limit": self.outbox.limit},
        )

    def _on_result(self, prediction: Prediction) -> None:
        self.telemetry.on_prediction(prediction)
        self.metrics.on_prediction(prediction)

    def _on_rejected(self, source: str, reason: str) -> None:
        self.warner.warn(WarningCode.INPUT_REJECTED, f"{source} input refused: {reason}", key=source)

    def _publish_life(self) -> None:
        try:
            life = self.telemetry.life()
        except Exception:
            logger.exception("could not measure Life")
            return
        self.link.publish(self._topic(Channel.LIFE), to_bytes(life), qos=1)

    def _life_loop(self) -> None:
        interval = self.confs.edge_node.life_interval_s
        while not self._stopped.wait(interval):
            if self.link.is_connected():
                self._publish_life()
