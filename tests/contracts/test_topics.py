"""Topic builders and the parser agree, and bad topics are refused."""

import pytest

from contracts.topics import (
    ApplicationTopic,
    Channel,
    DeviceTopic,
    TopicError,
    application_topic,
    dashboard_subscriptions,
    device_topic,
    node_subscriptions,
    parse_topic,
)


@pytest.mark.parametrize("channel", list(Channel))
def test_every_device_topic_round_trips_through_the_parser(channel: Channel) -> None:
    topic = device_topic("Hospital", "Lab-1", "node_7", channel)
    assert topic == f"Hospital/Devices/Lab-1/node_7/{channel.value}"
    assert parse_topic(topic) == DeviceTopic("Hospital", "Lab-1", "node_7", channel)
    assert str(parse_topic(topic)) == topic


def test_application_topic_round_trips() -> None:
    topic = application_topic("Hospital", "dashboard")
    assert topic == "Hospital/Applications/dashboard/Status"
    assert parse_topic(topic) == ApplicationTopic("Hospital", "dashboard", Channel.STATUS)


@pytest.mark.parametrize("segment", ["", "a/b", "+", "#", "x" * 65, "caf\u00e9", "a b", "$SYS"])
def test_builders_refuse_unsafe_segments(segment: str) -> None:
    with pytest.raises(TopicError):
        device_topic("Hospital", "Lab1", segment, Channel.LIFE)
    with pytest.raises(TopicError):
        device_topic(segment, "Lab1", "node", Channel.LIFE)


@pytest.mark.parametrize(
    "topic",
    [
        "Hospital/Devices/Lab1/node",
        "Hospital/Devices/Lab1/node/Telemetry",
        "Hospital/Things/Lab1/node/Life",
        "Hospital/Devices/Lab1/+/Life",
        "Hospital/Devices/Lab1/node/Life/extra",
        "/Devices/Lab1/node/Life",
        "",
    ],
)
def test_parser_refuses_topics_outside_the_scheme(topic: str) -> None:
    with pytest.raises(TopicError):
        parse_topic(topic)


def test_node_subscribes_only_to_its_own_commands() -> None:
    assert node_subscriptions("Hospital", "Lab1", "devA") == ["Hospital/Devices/Lab1/devA/Commands"]


def test_dashboard_subscribes_to_every_node_channel_but_commands() -> None:
    patterns = dashboard_subscriptions("Hospital")
    assert "Hospital/Devices/+/+/Sensors" in patterns
    assert not any(p.endswith("Commands") for p in patterns)
    shared = dashboard_subscriptions("Hospital", shared_group="ingest")
    assert shared == [f"$share/ingest/{p}" for p in patterns]
