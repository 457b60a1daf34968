"""Publishes dashboard Commands to nodes (used by the rollout engine inside the ingest process)."""

from __future__ import annotations

import logging
from typing import Protocol

import paho.mqtt.client as mqtt

from contracts.messages import Command, CommandMessage, to_bytes
from contracts.topics import Channel, device_topic

logger = logging.getLogger(__name__)


class CommandSender(Protocol):
    """What the rollout engine needs to reach a node."""

    def send(self, location: str, zone: str, device: str, command_id: str, command: Command) -> bool:
        """Queue a command for a node; False if it could not be queued."""
        ...


class MqttCommandPublisher:
    """Sends CommandMessages at QoS 1 on the node's Commands topic through a connected paho client."""

    def __init__(self, client: mqtt.Client, app_id: str) -> None:
        self.client = client
        self.app_id = app_id

    def send(self, location: str, zone: str, device: str, command_id: str, command: Command) -> bool:
        """Publish one command; paho keeps it until the broker acknowledges it (or the session ends)."""
        message = CommandMessage(device=self.app_id, command_id=command_id, command=command)
        topic = device_topic(location, zone, device, Channel.COMMANDS)
        info = self.client.publish(topic, to_bytes(message), qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            logger.warning("command %s to %s not queued: %s", command_id, device, mqtt.error_string(info.rc))
            return False
        logger.info("sent %s %s to %s", command.kind, command_id, device)
        return True
