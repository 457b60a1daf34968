"""A building broker bridged over TLS to the central broker: latency added by the bridge and its throughput.

Real Mosquitto processes rendered by broker_config (central, and a building bridged to it with
`python -m broker_config bridge`'s configuration). A node account publishes QoS 1 Life-sized
messages on its building broker; a dashboard account subscribed on the central broker stamps
their arrival. The same is measured with the node logged in to the central broker directly.
Ends with one JSON line.

    .venv/bin/python bench/bridge.py [--rate 200] [--seconds 10] [--burst 10000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from bridge_harness import bridged_sites  # noqa: E402
from broker_harness import BrokerHandle, make_broker  # noqa: E402

PAD = "x" * 300  # about the size of a Life payload


class Arrivals:
    """Arrival times of numbered messages at the central dashboard account."""

    def __init__(self) -> None:
        self.latency_ms: dict[int, float] = {}
        self.done = threading.Condition()

    def on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        body = json.loads(msg.payload)
        with self.done:
            self.latency_ms[body["i"]] = (time.time() - body["t"]) * 1000
            self.done.notify_all()

    def wait(self, count: int, timeout: float) -> bool:
        with self.done:
            return self.done.wait_for(lambda: len(self.latency_ms) >= count, timeout)


def run(publisher: Any, topic: str, arrivals: Arrivals, count: int, rate: float | None) -> dict[str, float]:
    """Publish count messages (paced at rate per second, or as fast as QoS 1 allows) and gather the figures."""
    began = time.monotonic()
    for i in range(count):
        if rate:
            time.sleep(max(0.0, began + i / rate - time.monotonic()))
        publisher.publish(topic, json.dumps({"i": i, "t": time.time(), "pad": PAD}), qos=1)
    arrived = arrivals.wait(count, 120)
    elapsed = time.monotonic() - began
    values = sorted(arrivals.latency_ms.values())
    return {
        "sent": count, "received": len(values), "complete": arrived, "per_s": round(len(values) / elapsed, 1),
        "p50_ms": round(statistics.median(values), 2) if values else -1.0,
        "p99_ms": round(values[int(0.99 * (len(values) - 1))], 2) if values else -1.0,
    }


def measure(central: BrokerHandle, publish_on: BrokerHandle, device: str, count: int, rate: float | None) -> dict[str, float]:
    """One run from device's broker to a fresh subscriber on the central broker."""
    arrivals = Arrivals()
    watch = central.client("dashboard", client_id=f"watch-{uuid.uuid4().hex[:6]}", on_message=arrivals.on_message)
    topic = publish_on.topic(device, "Life")
    watch.subscribe(topic, qos=1)
    time.sleep(0.5)
    node = publish_on.client(device, client_id=device)
    try:
        return run(node, topic, arrivals, count, rate)
    finally:
        for client in (node, watch):
            client.disconnect()
            client.loop_stop()


def main() -> int:
    """Start the brokers, measure both paths, print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="paced messages per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--burst", type=int, default=10_000, help="messages sent as fast as possible")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        handles: list[BrokerHandle] = []

        def factory(**kwargs: Any) -> BrokerHandle:
            handles.append(make_broker(Path(tmp) / uuid.uuid4().hex[:8], **kwargs))
            return handles[-1]

        try:
            sites = bridged_sites(factory, {"BuildingA": ("devA",)})
            central, building = sites.central, sites.buildings["BuildingA"]
            central.add_device("direct", zone="Central")
            paced = int(args.rate * args.seconds)
            figures = {
                "paced_rate": args.rate,
                "direct": measure(central, central, "direct", paced, args.rate),
                "bridged": measure(central, building, "devA", paced, args.rate),
                "direct_burst": measure(central, central, "direct", args.burst, None),
                "bridged_burst": measure(central, building, "devA", args.burst, None),
            }
        finally:
            for handle in handles:
                handle.close()
    for name, values in figures.items():
        print(f"{name:14s} {values}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
