"""Server-sent event streams: changes arrive as events, filters apply, lifetime is bounded."""

from __future__ import annotations

import time
from datetime import timedelta

from support.sse import events
import pytest
from flask import Flask
from flask.testing import FlaskClient

from dashboard.db import Database
from dashboard.models import Device, ModelRelease, Rollout, RolloutTarget, User
from support.web_seed import add_classifications, add_device, classification_row, now, sign_in


@pytest.fixture
def viewer(app: Flask, viewer_user: tuple[User, str]) -> FlaskClient:
    """A signed-in viewer; streams poll every 50 ms and live 1.5 s in these tests."""
    app.config.update(SSE_POLL_S=0.05, SSE_LIFETIME_S=1.5)
    return sign_in(app.test_client(), viewer_user[0].username, viewer_user[1])


def test_fleet_stream_sends_each_node_then_only_changes(viewer: FlaskClient, db: Database) -> None:
    with db.session() as session:
        add_device(session, "n1", cpu=10.0)
        add_device(session, "n2", cpu=20.0, last_seen=now() - timedelta(hours=1))
    response = viewer.get("/stream/fleet", buffered=False)
    assert response.mimetype == "text/event-stream"
    chunks = response.iter_encoded()
    first = events(chunks, lambda e: len(e) >= 2)
    by_node = {data["device_id"]: data for kind, data in first if kind == "node"}
    assert by_node["n1"]["cpu"] == 10 and not by_node["n1"]["stale"] and by_node["n2"]["stale"]
    with db.session() as session:
        session.get(Device, "n1").cpu_percent = 77.0  # type: ignore[union-attr]
    later = events(chunks, lambda e: any(d["device_id"] == "n1" for _, d in e))
    assert [(k, d["device_id"], d["cpu"]) for k, d in later] == [("node", "n1", 77)]
    response.close()


def test_results_stream_sends_only_new_rows_matching_the_filters(viewer: FlaskClient, db: Database) -> None:
    with db.session() as session:
        add_device(session, "n1")
        add_classifications(session, [classification_row("n1", now(), sample_id="old")])
    response = viewer.get("/stream/results?label=Pre", buffered=False)
    chunks = response.iter_encoded()
    next(chunks)  # the retry hint: the stream is open and has its starting point
    with db.session() as session:
        add_classifications(session, [
            classification_row("n1", now(), sample_id="new-benign", label="Benign"),
            classification_row("n1", now(), sample_id="new-pre", label="Pre", uncertain=True),
        ])
    got = events(chunks, lambda e: len(e) >= 1)
    assert [(k, d["sample_id"], d["uncertain"]) for k, d in got] == [("result", "new-pre", True)]
    response.close()


def test_results_stream_resumes_from_last_event_id(viewer: FlaskClient, db: Database) -> None:
    with db.session() as session:
        add_device(session, "n1")
        add_classifications(session, [classification_row("n1", now(), sample_id=f"s{i}") for i in range(3)])
    response = viewer.get("/stream/results", headers={"Last-Event-ID": "1"}, buffered=False)
    got = events(response.iter_encoded(), lambda e: len(e) >= 2)
    assert [d["sample_id"] for _, d in got] == ["s1", "s2"]
    response.close()


def test_rollout_stream_reports_target_states(viewer: FlaskClient, db: Database) -> None:
    with db.session() as session:
        add_device(session, "n1")
        release = ModelRelease(name="m", version="1.0.0", filename="m.tar.gz", sha256="a" * 64, size=1,
                               classes=["a", "b"], manifest={}, metrics={}, uploaded_by="alice")
        session.add(release)
        session.flush()
        rollout = Rollout(release_id=release.id, target_kind="all", canary_size=1, failure_threshold=0,
                          state="CANARY", created_by="alice")
        session.add(rollout)
        session.flush()
        session.add(RolloutTarget(rollout_id=rollout.id, device_id="n1", is_canary=True, state="SENT",
                                  command_id="c1", rollback_command_id="b1"))
        rollout_id = rollout.id
    response = viewer.get(f"/stream/rollouts/{rollout_id}", buffered=False)
    chunks = response.iter_encoded()
    first = events(chunks, lambda e: len(e) >= 2)
    assert ("rollout", "CANARY") in [(k, d.get("status")) for k, d in first]
    assert ("target", "SENT") in [(k, d.get("state")) for k, d in first]
    with db.session() as session:
        target = session.query(RolloutTarget).one()
        target.state, target.reported_at = "ACTIVE", now()
        session.get(Rollout, rollout_id).state = "COMPLETED"  # type: ignore[union-attr]
    later = [(k, d) for k, d in events(chunks, lambda e: len(e) >= 2) if k != "phase"]
    assert sorted((k, d.get("status") or d.get("state")) for k, d in later) == [("rollout", "COMPLETED"), ("target", "ACTIVE")]
    counts = [d["counts"] for k, d in later if k == "rollout"]
    assert [{key: c[key] for key in ("total", "ACTIVE", "active", "in_flight", "percent")} for c in counts] == [
        {"total": 1, "ACTIVE": 1, "active": 1, "in_flight": 0, "percent": 100.0}]
    response.close()
    assert viewer.get("/stream/rollouts/999").status_code == 404


def test_rollout_stream_keeps_the_phases_table_live(viewer: FlaskClient, db: Database) -> None:
    started = now() - timedelta(seconds=30)
    with db.session() as session:
        for device in ("n1", "n2"):
            add_device(session, device)
        release = ModelRelease(name="m", version="2.0.0", filename="m.tar.gz", sha256="a" * 64, size=1,
                               classes=["a", "b"], manifest={}, metrics={}, uploaded_by="alice")
        session.add(release)
        session.flush()
        rollout = Rollout(release_id=release.id, target_kind="all", canary_size=1, failure_threshold=0, state="CANARY",
                          created_by="alice", health_gate=True, phase=0, started_at=started,
                          phase_log=[{"phase": 0, "started_at": started.isoformat()}])
        session.add(rollout)
        session.flush()
        for phase, device in enumerate(("n1", "n2")):
            session.add(RolloutTarget(rollout_id=rollout.id, device_id=device, is_canary=phase == 0, phase=phase,
                                      state="SENT" if phase == 0 else "PENDING", command_id=f"c{phase}",
                                      rollback_command_id=f"b{phase}"))
        rollout_id = rollout.id
    response = viewer.get(f"/stream/rollouts/{rollout_id}", buffered=False)
    chunks = response.iter_encoded()
    first = {d["index"]: d for k, d in events(chunks, lambda e: any(k == "phase" for k, _ in e)) if k == "phase"}
    rows = {i: (p["name"], p["nodes"], p["active"], p["in_flight"], p["current"], p["gate"]) for i, p in first.items()}
    assert rows == {0: ("canary", 1, 0, 1, True, None), 1: ("phase 2", 1, 0, 0, False, None)}
    assert first[0]["started"] == started.isoformat()[:19].replace("T", " ") and first[0]["duration"].endswith(" s")
    gate = {"status": "fail", "reasons": ["uncertain share rose from 0% to 100%"],
            "before": {"results": 20, "uncertain": 0.0, "ood": 0.0, "latency_ms": 1.5},
            "after": {"results": 12, "uncertain": 1.0, "ood": 0.0, "latency_ms": 1.6}}
    with db.session() as session:
        session.query(RolloutTarget).filter_by(device_id="n1").one().state = "ACTIVE"
        halted = session.get(Rollout, rollout_id)
        assert halted is not None
        halted.state = "HALTED"
        halted.phase_log = [{"phase": 0, "started_at": started.isoformat(), "done_at": now().isoformat(), "gate": gate}]
    later = events(chunks, lambda e: any(k == "phase" and d["index"] == 0 and d["gate"] for k, d in e))
    canary = [d for k, d in later if k == "phase" and d["index"] == 0][-1]
    assert (canary["active"], canary["in_flight"], canary["status"]) == (1, 0, "HALTED")
    assert canary["gate"]["status"] == "fail" and canary["gate"]["tone"] == "bad"
    assert canary["gate"]["text"] == ("uncertain 0% → 100%, OOD 0% → 0%, latency 1.5 → 1.6 ms (20 → 12 results): "
                                      "uncertain share rose from 0% to 100%")
    response.close()


def test_streams_end_after_their_lifetime(viewer: FlaskClient, db: Database) -> None:
    started = time.monotonic()
    body = viewer.get("/stream/fleet").get_data(as_text=True)
    elapsed = time.monotonic() - started
    assert body.startswith("retry: ") and 1.0 <= elapsed < 5.0
