"""Page latency with 1,000,000 classifications and 100 nodes: fleet, results (filtered, paged) and node pages.

Seeds a temporary SQLite database in one transaction, signs in through the real login form and times
each page through the Flask test client. Prints the figures, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flask.testing import FlaskClient  # noqa: E402

from contracts.confs import load_confs  # noqa: E402
from dashboard import create_app  # noqa: E402
from dashboard.db import Database  # noqa: E402
from dashboard.migrations import upgrade_database  # noqa: E402
from dashboard.models import Classification, Device, Telemetry  # noqa: E402
from dashboard.services import users  # noqa: E402

LABELS = ("Benign", "Early", "Pre", "Pro")
REPO = Path(__file__).resolve().parents[1]


def _stamp(moment: datetime) -> str:
    """How the UTCDateTime column stores a time on SQLite (naive UTC text)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")


def seed(db: Database, nodes: int, results: int, telemetry_per_node: int, now: datetime) -> None:
    """Devices, classifications spread over 30 days and a day of telemetry per node, in one transaction."""
    rng = random.Random(7)
    device_ids = [f"node-{i:03d}" for i in range(nodes)]
    with db.session() as session:
        for index, device_id in enumerate(device_ids):
            session.add(Device(
                id=device_id, location="Hospital", zone=f"Lab{index % 4 + 1}", state="ONLINE" if index % 10 else "OFFLINE",
                model_version="1.0.0", software_version="0.1.0", first_seen=now - timedelta(days=30),
                last_seen=now - timedelta(seconds=index * 3), status_at=now, cpu_percent=rng.uniform(5, 95),
                memory_percent=rng.uniform(20, 80), disk_percent=40.0, temperature_c=rng.uniform(40, 70),
                outbox_depth=rng.randint(0, 20), uptime_s=1000.0, inference_count=10_000, telemetry_at=now,
            ))
    span_s = 30 * 24 * 3600
    classification = Classification.__table__
    columns = [c.name for c in classification.columns if c.name != "id"]
    telemetry = Telemetry.__table__
    life_columns = [c.name for c in telemetry.columns if c.name != "id"]
    raw = db.engine.raw_connection()
    try:
        driver = raw.driver_connection
        driver.isolation_level = None  # explicit BEGIN/COMMIT: one transaction, not one per row
        cursor = driver.cursor()
        cursor.execute("BEGIN")
        batch: list[tuple[object, ...]] = []
        insert_results = (f"INSERT INTO {classification.name} ({', '.join(columns)}) "
                          f"VALUES ({', '.join('?' for _ in columns)})")
        for index in range(results):
            label = LABELS[rng.randrange(4)]
            confidence = round(rng.uniform(0.3, 1.0), 4)
            sent = now - timedelta(seconds=span_s * (results - index) / results)
            probabilities = json.dumps({name: confidence if name == label else round((1 - confidence) / 3, 4) for name in LABELS})
            values = {
                "message_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "device_id": device_ids[index % nodes],
                "sample_id": f"{index:012x}", "image_sha256": f"{index:064x}", "label": label, "confidence": confidence,
                "probabilities": probabilities, "model_version": "1.0.0", "inference_ms": round(rng.uniform(2, 8), 2),
                "uncertain": 1 if confidence < 0.8 else 0, "sent_at": _stamp(sent), "received_at": _stamp(sent),
            }
            batch.append(tuple(values[c] for c in columns))
            if len(batch) >= 50_000:
                cursor.executemany(insert_results, batch)
                batch.clear()
        cursor.executemany(insert_results, batch)
        insert_life = (f"INSERT INTO {telemetry.name} ({', '.join(life_columns)}) "
                       f"VALUES ({', '.join('?' for _ in life_columns)})")
        step = 24 * 3600 / telemetry_per_node
        life = []
        for device_id in device_ids:
            for i in range(telemetry_per_node):
                sent = now - timedelta(seconds=step * (telemetry_per_node - i))
                values = {
                    "message_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "device_id": device_id,
                    "sent_at": _stamp(sent), "cpu_percent": rng.uniform(5, 95), "memory_percent": rng.uniform(20, 80),
                    "disk_percent": 40.0, "temperature_c": rng.uniform(40, 70), "uptime_s": float(i * step),
                    "inference_count": i, "inference_ms_mean": rng.uniform(2, 8), "outbox_depth": rng.randint(0, 20),
                    "model_version": "1.0.0",
                }
                life.append(tuple(values[c] for c in life_columns))
        cursor.executemany(insert_life, life)
        cursor.execute("COMMIT")
        cursor.execute("ANALYZE")
    finally:
        raw.close()


def sign_in(client: FlaskClient, username: str, password: str) -> None:
    """Through the real login form, CSRF token included."""
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', page)
    if token is None:
        raise SystemExit("error: no CSRF token on the login page")
    response = client.post("/login", data={"username": username, "password": password, "csrf_token": token.group(1)})
    if response.status_code != 302:
        raise SystemExit(f"error: sign-in failed with HTTP {response.status_code}")


def time_pages(
    client: FlaskClient, urls: Callable[[int], str], runs: int, seen: Callable[[str], None] = lambda body: None
) -> list[float]:
    """Milliseconds per GET, after two warm-up requests; every response must be 200; seen() gets each page."""
    for warm in range(2):
        client.get(urls(warm))
    timings = []
    for index in range(runs):
        url = urls(index)
        started = time.perf_counter()
        response = client.get(url)
        body = response.get_data()
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200 or not body:
            raise SystemExit(f"error: {url} answered HTTP {response.status_code}")
        seen(body.decode())
    return timings


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=1_000_000)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--runs", type=int, default=60, help="timed requests per page kind")
    args = parser.parse_args()
    if args.results < 1000 or args.nodes < 1 or args.runs < 5:
        print("error: need --results >= 1000, --nodes >= 1 and --runs >= 5", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as tmp:
        confs = load_confs(REPO / "confs.json")
        dashboard = confs.dashboard.model_copy(update={
            "database_url": f"sqlite:///{Path(tmp) / 'pages.db'}", "secret_key_file": str(Path(tmp) / "secret"),
            "package_dir": str(Path(tmp) / "packages"),
        })
        app = create_app(confs.model_copy(update={"dashboard": dashboard}), TESTING=True)
        db: Database = app.extensions["db"]
        upgrade_database(db.engine)
        now = datetime.now(UTC)
        started = time.perf_counter()
        seed(db, args.nodes, args.results, 1440, now)
        print(f"seeded {args.results:,} results, {args.nodes} nodes, {args.nodes * 1440:,} telemetry rows "
              f"in {time.perf_counter() - started:.1f} s")
        with db.session() as session:
            _, password = users.create_user(session, "bench", "viewer")
        client = app.test_client()
        sign_in(client, "bench", password)
        rng = random.Random(11)
        since = (now - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")

        older_links: list[str] = []

        def results_url(index: int) -> str:
            node = f"node-{rng.randrange(args.nodes):03d}"
            choices = [
                "/results",
                f"/results?node={node}",
                f"/results?label={LABELS[index % 4]}&uncertain=yes",
                f"/results?min_confidence=0.9&max_confidence=0.95&per_page=100",
                f"/results?node={node}&label=Pre&since={since}",
            ]
            if index % 3 == 2 and older_links:
                return older_links.pop()
            return choices[index % len(choices)]

        def keep_older_link(page: str) -> None:
            link = re.search(r'href="(/results\?[^"]*after=[^"]*)">Older', page)
            if link:
                older_links.append(link.group(1).replace("&amp;", "&"))

        figures = {}
        pages: tuple[tuple[str, Callable[[int], str], Callable[[str], None]], ...] = (
            ("fleet", lambda i: "/", lambda body: None),
            ("results", results_url, keep_older_link),
            ("node", lambda i: f"/nodes/node-{rng.randrange(args.nodes):03d}?range={('1h', '24h', '7d')[i % 3]}",
             lambda body: None),
        )
        for name, urls, seen in pages:
            timings = time_pages(client, urls, args.runs, seen)
            figures[f"{name}_p50_ms"] = round(statistics.median(timings), 1)
            figures[f"{name}_p95_ms"] = round(percentile(timings, 0.95), 1)
            print(f"{name:8s} p50 {figures[f'{name}_p50_ms']:7.1f} ms   p95 {figures[f'{name}_p95_ms']:7.1f} ms   "
                  f"max {max(timings):7.1f} ms   ({len(timings)} requests)")
        db.dispose()
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
