"""After a lost link the ingest asks every node it knows to replay; the supervisor gives that duty to one worker."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from contracts.messages import Command, Replay
from dashboard.db import Database
from dashboard.ingest.replay import MARGIN_S, MAX_SECONDS, replay_seconds, request_replay
from dashboard.ingest.supervise import worker_commands
from dashboard.migrations import upgrade_database
from dashboard.models import Device


class RecordingSender:
    """Keeps what would be published (the real publisher is proved by tests/faults/test_bridge_faults.py)."""

    def __init__(self, refuse: set[str] = frozenset()) -> None:
        self.sent: list[tuple[str, str, str, str, Command]] = []
        self.refuse = refuse

    def send(self, location: str, zone: str, device: str, command_id: str, command: Command) -> bool:
        if device in self.refuse:
            return False
        self.sent.append((location, zone, device, command_id, command))
        return True


def test_every_known_node_of_the_location_is_asked_once_with_one_command_id(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'd.db'}")
    upgrade_database(db.engine)
    now = datetime.now(UTC)
    with db.session() as session:
        session.add_all([Device(id="devA", location="Hospital", zone="Lab1", first_seen=now),
                         Device(id="devB", location="Hospital", zone="Lab2", first_seen=now),
                         Device(id="devC", location="Elsewhere", zone="Lab1", first_seen=now),
                         Device(id="devD", location="Hospital", zone="Lab1", first_seen=now)])
    sender = RecordingSender(refuse={"devD"})
    assert request_replay(db, sender, "Hospital", 45) == 2
    assert sorted((zone, device) for _l, zone, device, _c, _m in sender.sent) == [("Lab1", "devA"), ("Lab2", "devB")]
    assert {command_id for *_x, command_id, _m in sender.sent} == {sender.sent[0][3]}
    assert all(command == Replay(seconds=45) for *_x, command in sender.sent)
    db.dispose()


def test_the_replayed_window_covers_the_outage_and_a_margin_and_stays_within_a_day() -> None:
    assert replay_seconds(0.2) == 1 + MARGIN_S
    assert replay_seconds(12.7) == 13 + MARGIN_S
    assert replay_seconds(10 * 86_400) == MAX_SECONDS


def test_only_the_first_worker_of_a_group_asks_for_replays(tmp_path: Path) -> None:
    args = argparse.Namespace(shared=None, worker=None, confs=tmp_path / "c.json", batch_size=10, flush_ms=50.0,
                              no_engine=False, no_replay_requests=False, verbose=False)
    commands = worker_commands(args, 3, "dashboard")
    assert ["--no-replay-requests" in command for command in commands] == [False, True, True]
    args.no_replay_requests = True
    assert all("--no-replay-requests" in command for command in worker_commands(args, 2, "dashboard"))
