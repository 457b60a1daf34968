"""After the ingest's link to the broker was lost, ask every node to publish again what the ingest may have missed.

A restarted Mosquitto 2.0 restores sessions but drops what arrives for a shared subscription until its members
subscribe again, and a building broker's bridge may deliver before they do: the nodes' replay windows cover that.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select

from contracts.messages import Replay
from dashboard.db import Database
from dashboard.models import Device
from dashboard.publish import CommandSender

MARGIN_S = 30
"""Asked for beyond the outage itself: what was acknowledged just before the link dropped may be lost too."""
MAX_SECONDS = 86_400


def replay_seconds(outage_s: float) -> int:
    """How far back nodes replay after an outage of outage_s seconds."""
    return min(MAX_SECONDS, int(outage_s) + 1 + MARGIN_S)


def request_replay(db: Database, sender: CommandSender, location: str, seconds: int) -> int:
    """Send one Replay command to every node of location the dashboard knows; returns how many were queued."""
    with db.session(readonly=True) as session:
        devices = session.execute(select(Device.id, Device.zone).where(Device.location == location)).all()
    command = Replay(seconds=seconds)
    command_id = f"replay-{uuid.uuid4().hex[:16]}"
    return sum(sender.send(location, zone, device, command_id, command) for device, zone in devices)
