"""Database growth per node per day at the shipped rates, measured on a real database; ends with one JSON line.

A day of traffic for a few nodes (Life every `edge_node.life_interval_s`, a result every `--result-every-s`)
goes through the ingest's own BatchWriter (the same rows and indexes as in production), the retention job
rolls it up, and the bytes each table and its indexes take are read from the database (SQLite's dbstat,
PostgreSQL's pg_total_relation_size). The JSON line gives bytes per stored row and per node per day, and
the size one node settles at under the default retention (raw 30 days, minutes 90 days, hours for good).

    .venv/bin/python bench/db_growth.py                          # SQLite in a temporary folder
    .venv/bin/python bench/db_growth.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/growth
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from sqlalchemy import func, select, text  # noqa: E402

from contracts.confs import load_confs  # noqa: E402
from contracts.messages import LifeMessage, SensorsMessage  # noqa: E402
from contracts.retention_confs import RetentionConfs  # noqa: E402
from contracts.topics import Channel, DeviceTopic  # noqa: E402
from dashboard.db import Database  # noqa: E402
from dashboard.ingest.store import BatchWriter  # noqa: E402
from dashboard.ingest.validate import Accepted  # noqa: E402
from dashboard.migrations import upgrade_database  # noqa: E402
from dashboard.models import utcnow  # noqa: E402
from dashboard.services import retention  # noqa: E402

TABLES = ("telemetry", "classifications", "telemetry_minute", "telemetry_hour")
CLASSES = ("Benign", "Early", "Pre", "Pro")
BATCH = 1000


def messages(node: str, start: Any, life_s: float, result_s: float) -> list[Accepted]:
    """A day of one node's Life and Sensors messages, as the ingest would accept them."""
    out: list[Accepted] = []
    life = DeviceTopic("Hospital", "Lab1", node, Channel.LIFE)
    sensors = DeviceTopic("Hospital", "Lab1", node, Channel.SENSORS)
    for i in range(int(86400 / life_s)):
        out.append(Accepted(life, LifeMessage(
            device=node, sent_at=start + timedelta(seconds=i * life_s), cpu_percent=12.5 + i % 30,
            memory_percent=41.0 + i % 7, disk_percent=35.2, temperature_c=48.0 + i % 9, uptime_s=float(i * life_s),
            inference_count=i * 2, inference_ms_mean=3.1 + (i % 5) * 0.2, outbox_depth=i % 3, model_version="1.1.0",
        )))
    for i in range(int(86400 / result_s)):
        probs = {c: 0.05 for c in CLASSES}
        probs[CLASSES[i % 4]] = 0.85
        out.append(Accepted(sensors, SensorsMessage(
            device=node, sent_at=start + timedelta(seconds=i * result_s), sample_id=uuid.uuid4().hex,
            image_sha256=hashlib.sha256(f"{node}{i}".encode()).hexdigest(), label=CLASSES[i % 4], confidence=0.85,
            probabilities=probs, model_version="1.1.0", inference_ms=3.4, uncertain=False, ood_score=1.7,
        )))
    return sorted(out, key=lambda item: item.message.sent_at)


def table_bytes(db: Database) -> dict[str, int]:
    """Bytes each table takes with its indexes."""
    if db.dialect == "sqlite":
        db.dispose()
        with sqlite3.connect(db.engine.url.database) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            owner = dict(connection.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))
            sizes = dict.fromkeys(TABLES, 0)
            for name, size in connection.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
                if owner.get(name) in sizes:
                    sizes[owner[name]] += int(size)
        return sizes
    with db.engine.connect() as connection:
        return {t: int(connection.execute(text(f"SELECT pg_total_relation_size('{t}')")).scalar() or 0) for t in TABLES}


def row_counts(db: Database) -> dict[str, int]:
    """Rows in each measured table."""
    with db.engine.connect() as connection:
        return {t: int(connection.execute(select(func.count()).select_from(text(t))).scalar() or 0) for t in TABLES}


def main() -> int:
    """Fill, roll up, measure; print the figures and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--result-every-s", type=float, default=5.0, help="as bench/fleet.py (default 5 s)")
    parser.add_argument("--database-url", help="default: SQLite in a temporary folder")
    args = parser.parse_args()
    confs = load_confs(REPO / "confs.json")
    life_s, keep = confs.edge_node.life_interval_s, RetentionConfs()
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(args.database_url or f"sqlite:///{Path(tmp) / 'growth.db'}")
        upgrade_database(db.engine)
        writer, began = BatchWriter(db), time.monotonic()
        start = utcnow() - timedelta(days=1, minutes=5)
        for n in range(args.nodes):
            items = messages(f"node-{n:03d}", start, life_s, args.result_every_s)
            for i in range(0, len(items), BATCH):
                writer.write(items[i:i + BATCH], [])
        retention.run_once(db, keep)
        rows = row_counts(db)
        sizes = table_bytes(db)
        db.dispose()
    per_row = {t: round(sizes[t] / rows[t], 1) if rows[t] else 0.0 for t in TABLES}
    per_day = {t: round(sizes[t] / args.nodes) for t in TABLES}
    settled = (per_day["telemetry"] * keep.raw_telemetry_days + per_day["telemetry_minute"] * keep.minute_rollup_days)
    figures = {
        "backend": "postgresql" if args.database_url and "postgres" in args.database_url else "sqlite",
        "nodes": args.nodes, "life_interval_s": life_s, "result_every_s": args.result_every_s,
        "rows_per_node_day": {t: rows[t] // args.nodes for t in TABLES},
        "bytes_per_row": per_row, "bytes_per_node_day": per_day,
        "telemetry_bytes_per_node_day": per_day["telemetry"],
        "results_bytes_per_node_day": per_day["classifications"],
        "telemetry_settled_bytes_per_node": round(settled),
        # Hour rows have the minute rows' layout; a day's 24 of them fill less than a page, so size them by row.
        "growth_after_settling_bytes_per_node_year": round(365 * (24 * per_row["telemetry_minute"] + per_day["classifications"])),
        "seconds": round(time.monotonic() - began, 1),
    }
    for table in TABLES:
        print(f"{table:18s} {rows[table] // args.nodes:7d} rows/node/day  {per_row[table]:7.1f} B/row  "
              f"{per_day[table] / 1e6:6.2f} MB/node/day")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
