"""Ingest throughput through the real broker into SQLite: batched transactions vs a commit per message.

Messages are queued by Mosquitto for the ingest's persistent session while it is away (published by
several processes), then ingest connects and drains them; the figure is messages stored per second
from connect until the last one is committed. Ends with one JSON line.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from sqlalchemy import func, select  # noqa: E402

from broker_config import BrokerSettings, render  # noqa: E402
from broker_harness import make_broker  # noqa: E402
from contracts.messages import SensorsMessage, to_bytes  # noqa: E402
from dashboard.db import Database  # noqa: E402
from dashboard.ingest.store import BatchWriter  # noqa: E402
from dashboard.ingest.worker import IngestSettings, IngestWorker  # noqa: E402
from dashboard.migrations import upgrade_database  # noqa: E402
from dashboard.models import Classification  # noqa: E402

DEVICES = ("dev0", "dev1", "dev2", "dev3")
BATCHED_MESSAGES = 40_000
PER_MESSAGE_MESSAGES = 2_000


def payload(device: str, n: int) -> bytes:
    """One valid classification."""
    probs = {"Benign": 0.7, "Early": 0.1, "Pre": 0.1, "Pro": 0.1}
    return to_bytes(SensorsMessage(device=device, sample_id=f"s{n}", image_sha256=f"{n:064x}", label="Benign",
                                   confidence=0.7, probabilities=probs, model_version="1.0.0", inference_ms=2.0,
                                   uncertain=False))


def publish(host: str, port: int, device: str, password: str, topic: str, count: int, offset: int) -> None:
    """Publisher process: count QoS 1 messages, waiting for every PUBACK."""
    from broker_harness import connect_client

    client = connect_client(host, port, device, password)
    infos = [client.publish(topic, payload(device, offset + n), qos=1) for n in range(count)]
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


def run_mode(broker, db_url: str, total: int, batch_size: int, flush_s: float, client_id: str) -> tuple[float, int, int]:
    """Queue total messages for a persistent session, then time ingest draining them; returns (rate, sent, stored)."""
    database = Database(db_url)
    upgrade_database(database.engine)
    settings = IngestSettings(host=broker.host, port=broker.port, username=broker.dashboard_user,
                              password=broker.credentials[broker.dashboard_user], location=broker.location,
                              app_id=broker.dashboard_app, client_id=client_id, batch_size=batch_size,
                              flush_interval_s=flush_s)
    first = IngestWorker(settings, BatchWriter(database))  # makes the persistent session and its subscriptions
    first.start()
    first.connected.wait(10)
    time.sleep(0.5)
    first.client.disconnect()
    first.client.loop_stop()
    per_device = total // len(DEVICES)
    procs = [multiprocessing.Process(target=publish, args=(broker.host, broker.port, d, broker.credentials[d],
                                                           broker.topic(d, "Sensors"), per_device, 0)) for d in DEVICES]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"publisher {proc.name} failed with exit code {proc.exitcode}")
    sent = per_device * len(DEVICES)
    worker = IngestWorker(settings, BatchWriter(database))
    started = time.perf_counter()
    worker.start()
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 300
    while worker.totals.stored + worker.totals.duplicates < sent and time.monotonic() < deadline:
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    worker.stopping.set()
    thread.join(10)
    worker.stop()
    with database.session(readonly=True) as session:
        stored = int(session.scalar(select(func.count(func.distinct(Classification.message_id)))) or 0)
    database.dispose()
    return worker.totals.stored / elapsed, sent, stored


def main() -> int:
    """Run both modes on one broker and print figures plus the JSON line."""
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        broker = make_broker(Path(tmp) / "broker", devices=DEVICES, start=False)
        # Unlimited queue so the whole burst waits for the ingest session (the default caps it at 10,000).
        settings = BrokerSettings(run_as="root", tls_bind="127.0.0.1", log_dest=f"file {broker.paths.log}",
                                  max_queued_messages=0, autosave_interval=60)
        render(broker.root, broker.port, broker.tls_port, settings)
        broker.start()
        try:
            batched, sent_b, stored_b = run_mode(broker, f"sqlite:///{tmp}/batched.db", BATCHED_MESSAGES, 1000, 0.1, "bench-batched")
            print(f"batched (up to 1000 per transaction): {batched:,.0f} msg/s, {stored_b}/{sent_b} stored")
            single, sent_s, stored_s = run_mode(broker, f"sqlite:///{tmp}/single.db", PER_MESSAGE_MESSAGES, 1, 0.0, "bench-single")
            print(f"commit per message:            {single:,.0f} msg/s, {stored_s}/{sent_s} stored")
            print(f"ratio: {batched / single:.1f}x")
        finally:
            broker.close()
    sent, stored = sent_b + sent_s, stored_b + stored_s
    print(json.dumps({"batched_msgs_per_s": round(batched, 1), "per_message_msgs_per_s": round(single, 1),
                      "sent": sent, "stored": stored, "lost": sent - stored}))
    return 0 if sent == stored else 1


if __name__ == "__main__":
    sys.exit(main())
