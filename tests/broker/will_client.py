"""A device that announces ONLINE with a retained OFFLINE will, then idles until killed.

Run as: python will_client.py HOST PORT USER PASSWORD STATUS_TOPIC
"""

from __future__ import annotations

import sys
import time

import paho.mqtt.client as mqtt

from contracts.messages import NodeState, StatusMessage, to_bytes


def status(device: str, state: NodeState) -> bytes:
    """A Status payload of the message contract."""
    return to_bytes(StatusMessage(device=device, state=state, software_version="test"))


def main(host: str, port: str, user: str, password: str, topic: str) -> None:
    """Connect with the will, publish ONLINE, say ready, then wait to be killed."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{user}-will", protocol=mqtt.MQTTv311)
    client.username_pw_set(user, password)
    client.will_set(topic, status(user, NodeState.OFFLINE), qos=1, retain=True)
    client.connect(host, int(port), keepalive=30)
    client.loop_start()
    client.publish(topic, status(user, NodeState.ONLINE), qos=1, retain=True).wait_for_publish(5)
    print("ready", flush=True)
    while True:
        time.sleep(60)


if __name__ == "__main__":
    main(*sys.argv[1:6])
