"""Topic builders, the topic parser and per-role subscription lists (GeniSys / iotJumpWay style)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

SEGMENT_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
DEVICES = "Devices"
APPLICATIONS = "Applications"


class TopicError(ValueError):
    """A topic or topic segment that does not fit the scheme."""


class Channel(StrEnum):
    """The channels under a device's topic root."""

    STATUS = "Status"
    LIFE = "Life"
    SENSORS = "Sensors"
    WARNINGS = "Warnings"
    COMMANDS = "Commands"
    UPDATES = "Updates"


NODE_CHANNELS: tuple[Channel, ...] = (
    Channel.STATUS,
    Channel.LIFE,
    Channel.SENSORS,
    Channel.WARNINGS,
    Channel.UPDATES,
)
"""Channels a node publishes on; the dashboard only publishes on Commands."""


def check_segment(value: str, what: str) -> str:
    """Return value if it is a safe topic segment, else raise TopicError naming what it is."""
    if not isinstance(value, str) or not SEGMENT_PATTERN.match(value):
        raise TopicError(
            f"{what} {value!r} is not a valid topic segment "
            "(1-64 characters from A-Z a-z 0-9 _ . -)"
        )
    return value


@dataclass(frozen=True)
class DeviceTopic:
    """A parsed `{location}/Devices/{zone}/{device}/{Channel}` topic."""

    location: str
    zone: str
    device: str
    channel: Channel

    def __str__(self) -> str:
        return device_topic(self.location, self.zone, self.device, self.channel)


@dataclass(frozen=True)
class ApplicationTopic:
    """A parsed `{location}/Applications/{app}/{Channel}` topic."""

    location: str
    app: str
    channel: Channel

    def __str__(self) -> str:
        return application_topic(self.location, self.app, self.channel)


def device_topic(location: str, zone: str, device: str, channel: Channel | str) -> str:
    """Build a device topic."""
    channel = Channel(channel)
    check_segment(location, "location")
    check_segment(zone, "zone")
    check_segment(device, "device")
    return f"{location}/{DEVICES}/{zone}/{device}/{channel.value}"


def application_topic(location: str, app: str, channel: Channel | str = Channel.STATUS) -> str:
    """Build an application topic (the dashboard's own Status)."""
    channel = Channel(channel)
    check_segment(location, "location")
    check_segment(app, "application")
    return f"{location}/{APPLICATIONS}/{app}/{channel.value}"


def parse_topic(topic: str) -> DeviceTopic | ApplicationTopic:
    """Parse a concrete topic into its parts, or raise TopicError."""
    parts = topic.split("/") if isinstance(topic, str) else []
    try:
        if len(parts) == 5 and parts[1] == DEVICES:
            location, _, zone, device, channel = parts
            return DeviceTopic(
                check_segment(location, "location"),
                check_segment(zone, "zone"),
                check_segment(device, "device"),
                Channel(channel),
            )
        if len(parts) == 4 and parts[1] == APPLICATIONS:
            location, _, app, channel = parts
            return ApplicationTopic(
                check_segment(location, "location"), check_segment(app, "application"), Channel(channel)
            )
    except ValueError as exc:
        raise TopicError(f"topic {topic!r}: {exc}") from None
    raise TopicError(
        f"topic {topic!r} is neither {{location}}/Devices/{{zone}}/{{device}}/{{Channel}} "
        "nor {location}/Applications/{app}/{Channel}"
    )


def node_subscriptions(location: str, zone: str, device: str) -> list[str]:
    """Topics an edge node subscribes to: its own Commands only."""
    return [device_topic(location, zone, device, Channel.COMMANDS)]


def dashboard_subscriptions(location: str, shared_group: str | None = None) -> list[str]:
    """Topics the dashboard ingest subscribes to, optionally as an MQTT 5 shared subscription."""
    check_segment(location, "location")
    patterns = [f"{location}/{DEVICES}/+/+/{channel.value}" for channel in NODE_CHANNELS]
    if shared_group is None:
        return patterns
    check_segment(shared_group, "shared subscription group")
    return [f"$share/{shared_group}/{pattern}" for pattern in patterns]


def ingest_account(username: str, worker: int) -> str:
    """The broker account ingest worker `worker` (from 1) logs in as: the dashboard's own, then `USER.ingest-N`."""
    # The broker binds client ids to accounts, so workers side by side need accounts of their own; broker_config
    # makes them (add-dashboard --ingest-workers) with the dashboard account's password and ACL.
    check_segment(username, "username")
    if worker < 1:
        raise TopicError(f"invalid ingest worker number {worker}: must be at least 1")
    return username if worker == 1 else check_segment(f"{username}.ingest-{worker}", "ingest worker username")
