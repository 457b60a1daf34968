"""Ingest throughput with 20 open dashboard tabs streaming live updates, against none (reads must not stall ingest).

Each tab is a signed-in client of the real web app holding `/stream/fleet` or `/stream/results` open, which
polls the database once a second; the ingest run is bench/ingest.py's batched mode on the same SQLite file.
Ends with one JSON line; the figure of merit is the ratio (1.0 = tabs cost ingest nothing; ≥ 0.9 passes).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from broker_config import BrokerSettings, render  # noqa: E402
from broker_harness import make_broker  # noqa: E402
from contracts.confs import Confs  # noqa: E402

TABS = 20
MESSAGES = 20_000
sys.path.insert(0, str(REPO / "bench"))
import ingest as bench_ingest  # noqa: E402  (by its own name, so spawned ingest workers can import it too)

def open_tabs(db_path: Path, count: int, stop: threading.Event) -> list[threading.Thread]:
    """count signed-in clients of the web app, each reading one live stream until stop."""
    from dashboard import create_app
    from dashboard.migrations import upgrade_database
    from dashboard.services import users
    from support.web_seed import sign_in

    raw = json.loads((REPO / "confs.json").read_text())
    raw["dashboard"].update(database_url=f"sqlite:///{db_path}", secret_key_file=str(db_path.parent / "secret_key"),
                            package_dir=str(db_path.parent / "packages"))
    app = create_app(Confs.model_validate(raw), insecure_cookies=True, SSE_LIFETIME_S=3600.0, SSE_POLL_S=1.0,
                     SSE_MAX_PER_USER=count + 5, WTF_CSRF_ENABLED=True)
    database = app.extensions["db"]
    upgrade_database(database.engine)
    with database.session() as session:
        _user, password = users.create_user(session, "bench", "viewer")

    def tab(n: int) -> None:
        client = app.test_client()
        sign_in(client, "bench", password)
        response = client.get("/stream/fleet" if n % 2 else "/stream/results", buffered=False)
        for _ in response.iter_encoded():
            if stop.is_set():
                break
        response.close()

    threads = [threading.Thread(target=tab, args=(n,), daemon=True) for n in range(count)]
    for thread in threads:
        thread.start()
    return threads


def measure(broker: Any, tmp: Path, name: str, tabs: int) -> float:
    """Batched ingest rate on a fresh database while tabs streams are open."""
    db_path = tmp / f"{name}.db"
    stop = threading.Event()
    threads = open_tabs(db_path, tabs, stop) if tabs else []
    try:
        rate, sent, stored, _cpu = bench_ingest.run_mode(broker, f"sqlite:///{db_path}", MESSAGES, 1000, 0.1, name, 1)
    finally:
        stop.set()
    for thread in threads:
        thread.join(5)
    if stored != sent:
        raise RuntimeError(f"{name}: stored {stored} of {sent}")
    return float(rate)


def main() -> int:
    """Ingest alone, then with the tabs open, on one broker; print the figures and the JSON line."""
    with tempfile.TemporaryDirectory(prefix="bench-tabs-") as tmp_name:
        tmp = Path(tmp_name)
        broker = make_broker(tmp / "broker", devices=bench_ingest.DEVICES, start=False)
        settings = BrokerSettings(run_as="root", tls_bind="127.0.0.1", log_dest=f"file {broker.paths.log}",
                                  max_queued_messages=0, autosave_interval=60)
        render(broker.root, broker.port, broker.tls_port, settings)
        broker.start()
        try:
            alone = measure(broker, tmp, "tabs-none", 0)
            print(f"ingest alone:            {alone:,.0f} msg/s")
            with_tabs = measure(broker, tmp, "tabs-open", TABS)
            print(f"ingest with {TABS} tabs open: {with_tabs:,.0f} msg/s")
        finally:
            broker.close()
    ratio = with_tabs / alone if alone else 0.0
    print(json.dumps({"ingest_msgs_per_s": round(alone, 1), "ingest_with_tabs_msgs_per_s": round(with_tabs, 1),
                      "tabs": TABS, "ratio": round(ratio, 3), "within_10_percent": ratio >= 0.9,
                      "load_average_1m": round(os.getloadavg()[0], 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
