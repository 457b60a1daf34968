"""Edge node: OpenVINO classification of blood-smear images, reported over MQTT with a durable outbox."""

from contracts import SOFTWARE_VERSION

__all__ = ["SOFTWARE_VERSION"]
