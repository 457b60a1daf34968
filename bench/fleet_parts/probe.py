"""A probe node for bench/fleet.py: results stamped just before publishing, to time broker plus ingest alone."""

from __future__ import annotations

import threading
from typing import Any

from broker_harness import BrokerHandle, connect_client
from contracts.messages import SensorsMessage, to_bytes

PROBE_DEVICE = "probe-0001"


class Probe:
    """Publishes a result every `every_s` from its own thread; the fleet's simulators never delay it."""

    def __init__(self, broker: BrokerHandle, every_s: float = 0.1) -> None:
        self.broker = broker
        self.every_s = every_s
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)

    def start(self) -> None:
        """Start publishing."""
        self._thread.start()

    def stop(self) -> int:
        """Stop and wait for the last PUBACK; returns how many were sent."""
        self._stop.set()
        self._thread.join(60)
        return self.sent

    def _run(self) -> None:
        client: Any = connect_client(self.broker.host, self.broker.port, PROBE_DEVICE,
                                     self.broker.credentials[PROBE_DEVICE], client_id=PROBE_DEVICE)
        topic = self.broker.topic(PROBE_DEVICE, "Sensors")
        probs = {"Benign": 0.7, "Early": 0.1, "Pre": 0.1, "Pro": 0.1}
        infos = []
        while not self._stop.wait(self.every_s):
            message = SensorsMessage(device=PROBE_DEVICE, sample_id=f"probe-{self.sent}", image_sha256=f"{self.sent:064x}",
                                     label="Benign", confidence=0.7, probabilities=probs, model_version="1.0.0",
                                     inference_ms=1.0, uncertain=False)
            infos.append(client.publish(topic, to_bytes(message), qos=1))
            self.sent += 1
        for info in infos:
            info.wait_for_publish(60)
        client.disconnect()
        client.loop_stop()
