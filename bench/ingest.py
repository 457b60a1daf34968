"""Ingest throughput through the real broker into SQLite or PostgreSQL: batched transactions vs a commit per message.

Messages are queued by Mosquitto for the ingest workers' persistent sessions while they are away
(published by several processes), then the workers connect and drain them; the figure is messages
committed per second from connect until the last one is in the database. Each worker runs in its
own process, as `python -m dashboard.ingest` runs them: by default one per usable core (`--workers
auto`, as shipped) in the MQTT 5 shared subscription group `ingest`, each logging in as its own
broker account (the broker binds client ids to accounts, as production renders it); both modes use
the same workers, so the ratio compares like with like. `--database postgresql` runs against a
throw-away PostgreSQL cluster (initdb + pg_ctl on a free port). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from sqlalchemy import func, select  # noqa: E402

from broker_config import BrokerSettings, render  # noqa: E402
from broker_harness import make_broker  # noqa: E402
from contracts.messages import SensorsMessage, to_bytes  # noqa: E402
from contracts.topics import ingest_account  # noqa: E402
from dashboard.db import Database  # noqa: E402
from dashboard.ingest.store import BatchWriter  # noqa: E402
from dashboard.ingest.supervise import worker_count  # noqa: E402
from dashboard.ingest.worker import DEFAULT_SHARED_GROUP, IngestSettings, IngestWorker  # noqa: E402
from support.pg_cluster import postgres_cluster  # noqa: E402
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


def drain(settings: IngestSettings, db_url: str, ready: Event, go: Event, done: Event, cpu: Any, progress: Any) -> None:
    """Ingest worker process: connect on go, store until done (sharing its count), stop, report its CPU seconds."""
    database = Database(db_url)
    worker = IngestWorker(settings, BatchWriter(database))
    ready.set()
    go.wait()
    started = time.process_time()
    worker.start()
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    while not done.wait(0.01):
        progress.value = worker.totals.stored + worker.totals.duplicates
    worker.stopping.set()
    thread.join(10)
    worker.stop()
    cpu.put(time.process_time() - started)
    database.dispose()


def stored_count(database: Database) -> int:
    """Distinct results committed so far."""
    with database.session(readonly=True) as session:
        return int(session.scalar(select(func.count(func.distinct(Classification.message_id)))) or 0)


def run_mode(broker: Any, db_url: str, total: int, batch_size: int, flush_s: float, name: str,
             workers: int) -> tuple[float, int, int, float]:
    """Queue total messages for the workers' persistent sessions, then time their draining.

    Returns (rate, sent, stored, CPU microseconds the ingest processes spent per stored message).
    """
    database = Database(db_url)
    upgrade_database(database.engine)
    group = DEFAULT_SHARED_GROUP if workers > 1 else None
    # As `python -m dashboard.ingest --workers N` logs in: worker n as its own account (both modes reuse the sessions).
    settings = [IngestSettings(host=broker.host, port=broker.port, username=ingest_account(broker.dashboard_user, n),
                               password=broker.credentials[broker.dashboard_user], location=broker.location,
                               app_id=broker.dashboard_app, client_id=f"{broker.dashboard_app}-ingest-{n}",
                               shared_group=group, batch_size=batch_size, flush_interval_s=flush_s)
                for n in range(1, workers + 1)]
    for each in settings:  # make the persistent sessions and their subscriptions
        first = IngestWorker(each, BatchWriter(database))
        first.start()
        first.connected.wait(10)
        time.sleep(0.3)
        first.stopping.set()
        first.client.disconnect()
        first.client.loop_stop()
    per_device = total // len(DEVICES)
    publishers = [multiprocessing.Process(target=publish, args=(broker.host, broker.port, d, broker.credentials[d],
                                                                broker.topic(d, "Sensors"), per_device, 0)) for d in DEVICES]
    for proc in publishers:
        proc.start()
    for proc in publishers:
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"publisher {proc.name} failed with exit code {proc.exitcode}")
    sent = per_device * len(DEVICES)
    spawn = multiprocessing.get_context("spawn")
    go, done, cpu = spawn.Event(), spawn.Event(), spawn.Queue()
    ready = [spawn.Event() for _ in settings]
    progress = [spawn.Value("q", 0, lock=False) for _ in settings]
    procs = [spawn.Process(target=drain, args=(each, db_url, flag, go, done, cpu, count))
             for each, flag, count in zip(settings, ready, progress)]
    for proc in procs:
        proc.start()
    for flag in ready:
        if not flag.wait(60):
            raise RuntimeError("an ingest worker process did not start")
    started = time.perf_counter()
    go.set()
    deadline = time.monotonic() + 300
    # The workers share their committed counts: polling the database would compete with them for CPU.
    while sum(count.value for count in progress) < sent and time.monotonic() < deadline:
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    done.set()
    cpu_s = sum(cpu.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join(30)
    stored = stored_count(database)
    database.dispose()
    return stored / elapsed, sent, stored, cpu_s / max(stored, 1) * 1e6


def main(argv: list[str] | None = None) -> int:
    """Run both modes on one broker and print figures plus the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=worker_count, default="auto", metavar="auto|N",
                        help="ingest processes in one shared subscription group (default auto: one per usable core)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite",
                        help="sqlite (default) or postgresql (a throw-away cluster on a free port)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp, contextlib.ExitStack() as stack:
        if args.database == "postgresql":
            cluster = stack.enter_context(postgres_cluster())
            batched_url, single_url = cluster.create_database("batched"), cluster.create_database("single")
        else:
            batched_url, single_url = f"sqlite:///{tmp}/batched.db", f"sqlite:///{tmp}/single.db"
        broker = make_broker(Path(tmp) / "broker", devices=DEVICES, start=False)
        # Unlimited queue so the whole burst waits for the ingest sessions (the default caps it at 10,000);
        # client ids bound to accounts, as production renders it.
        settings = BrokerSettings(run_as="root", tls_bind="127.0.0.1", log_dest=f"file {broker.paths.log}",
                                  max_queued_messages=0, autosave_interval=60)
        render(broker.root, broker.port, broker.tls_port, settings)
        broker.start()
        try:
            load_before = os.getloadavg()
            batched, sent_b, stored_b, cpu_b = run_mode(broker, batched_url, BATCHED_MESSAGES, 1000, 0.1, "bench-batched",
                                                         args.workers)
            print(f"batched (up to 1000 per transaction): {batched:,.0f} msg/s, {stored_b}/{sent_b} stored, {cpu_b:.0f} us CPU each")
            single, sent_s, stored_s, cpu_s = run_mode(broker, single_url, PER_MESSAGE_MESSAGES, 1, 0.0, "bench-single",
                                                       args.workers)
            print(f"commit per message:                   {single:,.0f} msg/s, {stored_s}/{sent_s} stored, {cpu_s:.0f} us CPU each")
            print(f"ratio: {batched / single:.1f}x with {args.workers} worker(s) on {args.database}; "
                  f"load average before {load_before}, after {os.getloadavg()}")
        finally:
            broker.close()
    sent, stored = sent_b + sent_s, stored_b + stored_s
    print(json.dumps({"database": args.database, "workers": args.workers, "stored_per_s": round(batched, 1),
                      "per_message_per_s": round(single, 1), "ratio": round(batched / single, 1), "sent": sent,
                      "stored": stored, "lost": sent - stored, "batched_cpu_us_per_msg": round(cpu_b, 1),
                      "load_before": [round(x, 2) for x in load_before],
                      "load_after": [round(x, 2) for x in os.getloadavg()]}))
    return 0 if sent == stored else 1


if __name__ == "__main__":
    sys.exit(main())
