"""`python -m edge_node.simulate.traffic`: many nodes' MQTT traffic (Life, results) at ~0.15 ms of CPU a message.

Each node is a real MQTT 5 session (own client id and account, persistent session, retained birth and will) that
publishes contract payloads at QoS 1, without model, outbox or OTA agent: payloads are serialised once per node by
contracts.messages and only their varying values are swapped per message. One SharedMqttLoop thread does all the
I/O; paho keeps each unacknowledged publish and sends it again after a reconnect.
"""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from queue import SimpleQueue

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contracts.confs import DEFAULT_PATH, ConfsError, load_confs
from contracts.messages import utc_now
from contracts.model_package import PackageError, parse_public_key, read_manifest
from contracts.topics import Channel
from edge_node.mqtt_link import SESSION_EXPIRY_S
from edge_node.simulate.__main__ import CliError, _non_negative, _positive, _positive_int, read_secret_map
from edge_node.simulate.fleet import FleetError, fleet_device_ids
from edge_node.simulate.light_node import LightNode, TrafficSettings, stamp
from edge_node.simulate.shared import SystemSampler
from edge_node.simulate.shared_loop import SharedMqttLoop

logger = logging.getLogger(__name__)
CHANNELS = ("results", "life", "status")


class TrafficGenerator:
    """N light nodes on one SharedMqttLoop: Life every interval, a result at a rate, every publish acknowledged."""

    def __init__(self, settings: TrafficSettings, credentials: Mapping[str, str]) -> None:
        ids = fleet_device_ids(settings.device_prefix, settings.nodes)
        if missing := [d for d in ids if d not in credentials]:
            raise FleetError(f"no broker password for {len(missing)} device(s), e.g. {missing[:3]}")
        self.settings = settings
        started = time.monotonic()
        self.nodes = [LightNode(d, credentials[d], settings, started) for d in ids]
        self.sent, self.acked = dict.fromkeys(CHANNELS, 0), dict.fromkeys(CHANNELS, 0)
        self.refused = self.late_ticks = 0
        self.publishing = threading.Event()
        self._calls: SimpleQueue[Callable[[], None]] = SimpleQueue()
        self._heap: list[tuple[float, int, str]] = []
        self._writers: dict[LightNode, Callable[[], None]] = {}
        self._next_pass = 0.0
        self._sampler = SystemSampler(os.getcwd())
        self.loop = SharedMqttLoop(tick=self._tick)
        for node in self.nodes:
            self._wire(node)

    def _wire(self, node: LightNode) -> None:
        """Callbacks, will and the persistent-session connect of one node (as MqttLink does)."""
        s, client = self.settings, node.client

        def pre_connect(c: mqtt.Client, _u: object) -> None:
            node.session_started = utc_now()
            c.will_set(node.topics[Channel.STATUS], node.status(False), qos=1, retain=True)

        def on_connect(c: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
            if getattr(reason, "is_failure", False):
                logger.error("broker refused %s: %s", node.device, reason)
            else:
                self._publish(node, "status", node.topics[Channel.STATUS], node.status(True), retain=True)

        def on_publish(_c: mqtt.Client, _u: object, mid: int, reason: object, _p: object) -> None:
            channel = node.pending.pop(mid, None)
            if channel is not None:
                self.acked[channel] += 1
                self.refused += bool(getattr(reason, "is_failure", False))

        client.on_pre_connect, client.on_connect, client.on_publish = pre_connect, on_connect, on_publish
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        client.connect_async(s.host, s.port, keepalive=s.keepalive, clean_start=False, properties=properties)
        self.loop.attach(client, 1, 30)
        register, unregister = client.on_socket_register_write, client.on_socket_unregister_write

        def want_write(c: mqtt.Client, u: object, sock: object) -> None:
            # Written at the end of the loop's pass (_flush): no epoll change and wake-up per message.
            self._writers[node] = lambda: (setattr(node, "watched", True), register(c, u, sock))

        def written(c: mqtt.Client, u: object, sock: object) -> None:
            if node.watched:
                node.watched = unregister(c, u, sock) and False

        client.on_socket_register_write, client.on_socket_unregister_write = want_write, written

    def _flush(self) -> None:
        """Write what each node queued; only a socket that took less than all of it is watched for writability."""
        while self._writers:
            node, watch = self._writers.popitem()
            node.client.loop_write()
            if node.client.want_write() and not node.watched:
                watch()

    def _publish(self, node: LightNode, channel: str, topic: str, payload: bytes, retain: bool = False) -> None:
        """QoS 1 publish on the loop thread; paho keeps it (across reconnects) until its PUBACK."""
        info = node.client.publish(topic, payload, qos=1, retain=retain)
        node.pending[info.mid] = channel
        self.sent[channel] += 1

    def _tick(self) -> float:
        """Run queued calls, then publish every Life and result now due; returns seconds until the next."""
        while not self._calls.empty():
            self._calls.get_nowait()()
        try:
            return self._publish_due()
        finally:
            self._flush()

    def _publish_due(self) -> float:
        """Publish what is due, at most one pass each 5 ms (a pass writes many nodes' messages at once)."""
        now, s = time.monotonic(), self.settings
        if not self.publishing.is_set() or not self._heap or now < self._next_pass:
            return self._next_pass - now if self.publishing.is_set() else 0.2
        self._next_pass = now + 0.005
        for _ in range(1000):
            due, index, kind = self._heap[0]
            if due > now:
                return max(due - now, 0.005)
            period = s.life_interval_s if kind == "life" else 1.0 / s.rate
            self.late_ticks += now - due > period
            heapq.heapreplace(self._heap, (due + period, index, kind))
            node = self.nodes[index]
            message_id = uuid.uuid4()
            values = {"message_id": str(message_id), "sent_at": stamp()}
            if kind == "life":
                cpu, memory, disk = self._sampler()
                values |= {"cpu_percent": repr(cpu), "memory_percent": repr(memory), "disk_percent": repr(disk),
                           "uptime_s": repr(round(now - node.started, 3)), "inference_count": str(node.results)}
                self._publish(node, "life", node.topics[Channel.LIFE], node.life.fill(values))
            else:
                values |= {"sample_id": message_id.hex, "image_sha256": os.urandom(32).hex()}
                template = node.sensors[(index + node.results) % len(node.sensors)]
                node.results += 1
                self._publish(node, "results", node.topics[Channel.SENSORS], template.fill(values))
        return 0.0

    def connected(self) -> int:
        """How many nodes hold a connection now."""
        return sum(node.client.is_connected() for node in self.nodes)

    def unacked(self) -> int:
        """Publishes still waiting for their PUBACK."""
        return sum(len(node.pending) for node in self.nodes)

    def start(self, connect_timeout: float = 60.0) -> int:
        """Connect every node (waiting at most connect_timeout), then start publishing; returns nodes connected."""
        self.loop.start()
        deadline = time.monotonic() + connect_timeout
        while (connected := self.connected()) < len(self.nodes) and time.monotonic() < deadline:
            time.sleep(0.1)
        rng, now, s = random.Random(0), time.monotonic(), self.settings
        heap = [(now + rng.random() * s.life_interval_s, i, "life") for i in range(len(self.nodes))]
        if s.rate > 0:
            heap += [(now + rng.random() / s.rate, i, "result") for i in range(len(self.nodes))]
        heapq.heapify(heap)
        self._calls.put(lambda: (setattr(self, "_heap", heap), self.publishing.set()))
        return connected

    def _on_loop(self, call: Callable[[], object], timeout: float = 10.0) -> None:
        """Run call on the loop thread (after every call queued before it) and wait for it."""
        done = threading.Event()
        self._calls.put(lambda: (call(), done.set()))
        done.wait(timeout)

    def drain(self, timeout: float) -> bool:
        """Stop publishing and wait (at most timeout) until every publish is acknowledged."""
        deadline = time.monotonic() + timeout
        self._on_loop(self.publishing.clear, timeout)
        while self.unacked() and time.monotonic() < deadline:
            time.sleep(0.1)
        return not self.unacked()

    def stop(self, timeout: float = 10.0) -> bool:
        """Publish every node's retained OFFLINE, wait for the PUBACKs (bounded), disconnect; True if all acked."""
        for node in self.nodes:
            self.loop.detach(node.client)
            self._calls.put(lambda node=node: self._publish(node, "status", node.topics[Channel.STATUS],
                                                             node.status(False), retain=True))
        acked = self.drain(timeout)
        self._on_loop(lambda: [n.client.disconnect() for n in self.nodes], timeout)
        self.loop.stop()
        return acked

    def summary(self, connected: int, duration: float, drained: bool) -> dict[str, object]:
        """The figures bench/fleet.py reads (the simulator's keys: results_stored, life_sent, late_ticks, connected)."""
        sent, acked = self.sent, self.acked
        return {"nodes": len(self.nodes), "connected": connected, "duration_s": duration,
                "results_stored": sent["results"], "results_acked": acked["results"], "life_sent": sent["life"],
                "life_acked": acked["life"], "status_sent": sent["status"], "status_acked": acked["status"],
                "refused": self.refused, "unacked": self.unacked(), "drained": drained, "late_ticks": self.late_ticks}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m edge_node.simulate.traffic", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=_positive_int, required=True, help="how many nodes")
    parser.add_argument("--rate", type=_non_negative, default=0.2, help="results per node per second")
    parser.add_argument("--life-interval", type=_positive, default=1.0, help="seconds between Life messages")
    parser.add_argument("--duration", type=_positive, default=60.0, help="seconds to publish")
    parser.add_argument("--drain-timeout", type=_non_negative, default=60.0,
                        help="seconds to wait at the end for every PUBACK (default 60)")
    parser.add_argument("--confs", type=Path, default=DEFAULT_PATH, help="confs.json (broker, identity, ota keys)")
    parser.add_argument("--credentials", type=Path, required=True, help="JSON: device id -> broker password")
    parser.add_argument("--device-prefix", default="traffic", help="device ids are PREFIX-0001, PREFIX-0002, ...")
    parser.add_argument("--initial-package", type=Path, help="package whose version and classes results name")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def _settings(args: argparse.Namespace) -> TrafficSettings:
    """TrafficSettings from the command line, confs.json and the package's verified manifest."""
    try:
        confs = load_confs(args.confs)
        package = args.initial_package or Path(confs.edge_node.initial_package or "")
        manifest = read_manifest(package, [parse_public_key(k) for k in confs.ota.trusted_public_keys])
        return TrafficSettings(
            nodes=args.nodes, host=confs.mqtt.host, port=confs.mqtt.port, location=confs.identity.location,
            zone=confs.identity.zone, model_version=manifest.version, classes=tuple(manifest.classes), rate=args.rate,
            life_interval_s=args.life_interval, device_prefix=args.device_prefix, tls=confs.mqtt.tls,
            ca_file=confs.mqtt.ca_file, keepalive=confs.mqtt.keepalive, runtime=confs.edge_node.runtime)
    except (ConfsError, PackageError, FleetError, OSError) as exc:
        raise CliError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run for --duration, drain, stop; print the summary as the last line."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        generator = TrafficGenerator(_settings(args), read_secret_map(args.credentials, "credentials"))
    except (CliError, FleetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"starting {args.nodes} light nodes", flush=True)
    connected = generator.start()
    stop.wait(args.duration)
    connected = max(connected, generator.connected())
    drained = generator.drain(args.drain_timeout)
    generator.stop()
    print(json.dumps(generator.summary(connected, args.duration, drained)), flush=True)
    return 0 if drained else 1


if __name__ == "__main__":
    sys.exit(main())
