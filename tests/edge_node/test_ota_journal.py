"""The OTA command journal: durable, bounded, and never a reason for a node not to start."""

from __future__ import annotations

import json

from contracts.messages import CommandMessage, Rollback
from edge_node.ota import CommandJournal


def command(command_id: str) -> CommandMessage:
    return CommandMessage(device="dashboard", command_id=command_id, command=Rollback())


def test_accepted_commands_survive_a_restart_in_order(tmp_path):
    journal = CommandJournal(tmp_path / "j.json")
    journal.accept(command("a"))
    journal.accept(command("b"))
    again = CommandJournal(tmp_path / "j.json")
    assert [m.command_id for m in again.queued()] == ["a", "b"]
    assert again.known("a") and not again.known("c")


def test_finished_ids_are_remembered_up_to_the_bound(tmp_path):
    journal = CommandJournal(tmp_path / "j.json", remembered_ids=3)
    for index in range(5):
        journal.finish(f"c{index}")
    again = CommandJournal(tmp_path / "j.json", remembered_ids=3)
    assert [again.known(f"c{i}") for i in range(5)] == [False, False, True, True, True]


def test_the_pending_command_and_its_step_survive_a_restart(tmp_path):
    journal = CommandJournal(tmp_path / "j.json")
    journal.accept(command("x"))
    journal.begin("x", "model_update", "1.2.0", "DOWNLOADING")
    journal.stage("SELF_TEST")
    again = CommandJournal(tmp_path / "j.json")
    assert again.pending() == {"command_id": "x", "kind": "model_update", "version": "1.2.0", "state": "SELF_TEST"}
    assert again.queued() == [] and again.known("x")


def test_a_corrupt_journal_is_set_aside_and_the_node_starts_fresh(tmp_path):
    path = tmp_path / "j.json"
    path.write_text('{"done": ["a"], "queued": [')
    journal = CommandJournal(path)
    assert journal.pending() is None and journal.queued() == []
    assert len(list(tmp_path.glob("j.json.corrupt-*"))) == 1
    journal.finish("b")
    assert json.loads(path.read_text())["done"] == ["b"]


def test_unreadable_queued_entries_are_dropped_not_fatal(tmp_path):
    path = tmp_path / "j.json"
    from contracts.messages import to_bytes

    good = to_bytes(command("ok")).decode()
    path.write_text(json.dumps({"done": [], "pending": None, "queued": [
        {"command_id": "bad", "message": "{not json"}, {"command_id": "ok", "message": good}, "junk",
    ]}))
    assert [m.command_id for m in CommandJournal(path).queued()] == ["ok"]


def test_outcomes_survive_a_restart_and_are_forgotten_with_their_id(tmp_path):
    journal = CommandJournal(tmp_path / "j.json", remembered_ids=2)
    journal.accept(command("q"))
    journal.begin("x", "model_update", "1.2.0", "DOWNLOADING")
    assert journal.recorded("x") == {"state": "DOWNLOADING", "version": "1.2.0"}
    journal.finish("x", {"state": "ACTIVE", "version": "1.2.0", "reason": None})
    journal.finish("y", {"state": "FAILED", "version": "1.3.0", "reason": "download failed"})
    again = CommandJournal(tmp_path / "j.json", remembered_ids=2)
    assert again.recorded("x") == {"state": "ACTIVE", "version": "1.2.0", "reason": None}
    assert again.recorded("q") is None  # queued: it will answer for itself when it runs
    again.finish("z", {"state": "ROLLED_BACK", "version": "1.1.0", "reason": None})
    assert not again.known("x") and again.recorded("x") is None
    assert json.loads((tmp_path / "j.json").read_text())["outcomes"].keys() == {"y", "z"}
