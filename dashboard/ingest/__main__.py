"""`python -m dashboard.ingest [--confs PATH] [--workers auto|N] [--shared GROUP] [--worker NAME]`."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from contracts.confs import ConfsError, load_confs, read_secret
from contracts.topics import TopicError, check_segment
from dashboard import database_url
from dashboard.db import Database
from dashboard.ingest import replay
from dashboard.ingest.screen import ClockBounds
from dashboard.ingest.store import BatchWriter
from dashboard.ingest.supervise import supervise, worker_commands, worker_count
from dashboard.ingest.worker import IngestSettings, IngestWorker
from dashboard.migrations import upgrade_database
from dashboard.publish import MqttCommandPublisher
from dashboard.services import alert_settings, alerts, fhir_push, notify, retention
from dashboard.services.rollout_engine import RolloutEngine

logger = logging.getLogger("dashboard.ingest")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m dashboard.ingest", description="Store what nodes publish; run rollouts.")
    parser.add_argument("--confs", type=Path, default=Path(os.environ.get("DASHBOARD_CONFS", "confs.json")))
    parser.add_argument("--workers", type=worker_count, default="auto", metavar="auto|N",
                        help="worker processes in one MQTT 5 shared subscription group (default auto: one per usable "
                        "core); worker N logs in as USER.ingest-N (made by broker_config add-dashboard)")
    parser.add_argument("--shared", metavar="GROUP", help="MQTT 5 shared subscription group (default with several "
                        "workers: ingest), so workers here and on other machines split the load")
    parser.add_argument("--worker", help="worker name within the group (part of the client id; default 1, or 1..N)")
    parser.add_argument("--username", help="broker account (default: dashboard.app_id); the broker binds client ids "
                        "to accounts, so ingest on another machine needs its own (add-dashboard --username)")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--flush-ms", type=float, default=100.0)
    parser.add_argument("--no-engine", action="store_true",
                        help="do not run the rollout engine, the retention job or the alert rules here")
    parser.add_argument("--no-replay-requests", action="store_true",
                        help="do not ask the nodes to replay after a lost link (another worker of the group does)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Wire confs, database, writer, engine and MQTT worker; run until SIGTERM/SIGINT."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        confs = load_confs(args.confs)
        for value, what in ((args.shared, "shared group"), (args.worker, "worker name"), (args.username, "username")):
            if value is not None:
                check_segment(value, what)
    except (ConfsError, TopicError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.batch_size < 1 or args.flush_ms <= 0:
        print("error: --batch-size must be ≥ 1 and --flush-ms > 0", file=sys.stderr)
        return 2
    app_id = confs.dashboard.app_id
    password = read_secret("MQTT_PASSWORD", confs.mqtt.password_file)
    if password is None:
        print("error: no broker password: set MQTT_PASSWORD or mqtt.password_file", file=sys.stderr)
        return 2
    try:
        commands = worker_commands(args, args.workers, args.username or app_id) if args.workers > 1 else []
    except TopicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    db = Database(database_url(confs))
    upgrade_database(db.engine)
    if commands:
        # Migrated once here, before the workers start, so they never race to create the schema.
        db.dispose()
        return supervise(commands)
    worker_name = args.worker or "1"
    suffix = f"{args.shared}-{worker_name}" if args.shared else worker_name
    settings = IngestSettings(
        host=confs.mqtt.host, port=confs.mqtt.port, username=args.username or app_id, password=password,
        location=confs.identity.location, app_id=app_id, client_id=f"{app_id}-ingest-{suffix}",
        shared_group=args.shared, tls=confs.mqtt.tls, ca_file=confs.mqtt.ca_file, keepalive=confs.mqtt.keepalive,
        batch_size=args.batch_size, flush_interval_s=args.flush_ms / 1000,
    )
    clock = ClockBounds(confs.dashboard.max_clock_skew_s, confs.dashboard.max_message_age_s)
    worker = IngestWorker(settings, BatchWriter(db, clock))
    engine = None if args.no_engine else RolloutEngine(db, MqttCommandPublisher(worker.client, app_id), confs.dashboard.public_url)
    every_s = confs.dashboard.alerts.evaluate_every_s
    worker.tick = engine.tick if engine is not None else None
    if not args.no_replay_requests:
        worker.request_replay = functools.partial(
            replay.request_replay, db, MqttCommandPublisher(worker.client, app_id), confs.identity.location
        )

    def evaluate_alerts() -> None:
        """Evaluate the alert rules (per site) and send notifications every evaluate_every_s until the worker stops."""
        # Own thread: with 600 nodes one pass takes about a second, and storing must not wait for it.
        while True:
            try:
                with db.session() as session:
                    alerts.evaluate(session, alert_settings.rules_lookup(session, confs.dashboard))
                notify.run_once(db, confs.dashboard.notify, confs.dashboard.public_url)
                fhir_push.run_once(db, confs.dashboard)
            except Exception:
                logger.exception("alert evaluation failed; trying again in %.0f s", every_s)
            if worker.stopping.wait(every_s):
                return

    alert_thread = threading.Thread(target=evaluate_alerts, name="alerts", daemon=True)
    # Like the rollout engine, one worker of a shared group runs retention and alerts (--no-engine on the others).
    retention_thread = threading.Thread(
        target=retention.run_forever, args=(db, confs.dashboard.retention, worker.stopping), name="retention", daemon=True
    )

    def stop(signum: int, _frame: FrameType | None) -> None:
        worker.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.start()
    if engine is not None:
        alert_thread.start()
        retention_thread.start()
    logger.info("ingest %s running against %s", settings.client_id, db.engine.url.render_as_string(hide_password=True))
    try:
        worker.run()
    finally:
        worker.stop()
        if alert_thread.is_alive():
            alert_thread.join(30)
        if retention_thread.is_alive():
            retention_thread.join(30)
        db.dispose()
        logger.info("ingest stopped: %d stored, %d duplicates, %d rejected",
                    worker.totals.stored, worker.totals.duplicates, worker.totals.rejected)
    return 0


if __name__ == "__main__":
    sys.exit(main())

