"""Ingest throughput with 20 open dashboard tabs streaming live updates, against none (reads must not stall ingest).

Each tab is a signed-in client of the real web app holding `/stream/fleet` or `/stream/results` open (polls once a
second, the answers shared by the tabs of one kind); the tabs run in their own process, as browsers and the web
workers would, and the ingest run is bench/ingest.py's batched mode on the same SQLite file. A third run lowers the
tabs' CPU priority: if the ratio then recovers, what the tabs cost ingest is CPU on a small box, not the database
(locks, checkpoints, long read transactions); the ingest's own CPU per message says the same from the other side.
Ends with one JSON line; the figure of merit is the ratio (1.0 = tabs cost ingest nothing; >= 0.9 passes).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
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


def tabs_process(db_path: str, count: int, niceness: int, ready: Any, stop: Any, report: Any) -> None:
    """count signed-in clients of one web app in this process, each reading one live stream until stop."""
    from dashboard import create_app
    from dashboard.migrations import upgrade_database
    from dashboard.reads.live import shared_reads
    from dashboard.services import users
    from support.web_seed import sign_in

    os.nice(niceness)
    path = Path(db_path)
    raw = json.loads((REPO / "confs.json").read_text())
    raw["dashboard"].update(database_url=f"sqlite:///{path}", secret_key_file=str(path.parent / "secret_key"),
                            package_dir=str(path.parent / "packages"))
    app = create_app(Confs.model_validate(raw), insecure_cookies=True, SSE_LIFETIME_S=3600.0, SSE_POLL_S=1.0,
                     SSE_MAX_PER_USER=count + 5, WTF_CSRF_ENABLED=True)
    database = app.extensions["db"]
    upgrade_database(database.engine)
    with database.session() as session:
        _user, password = users.create_user(session, "bench", "viewer")
    frames = [0] * count

    def tab(n: int) -> None:
        client = app.test_client()
        sign_in(client, "bench", password)
        response = client.get("/stream/fleet" if n % 2 else "/stream/results", buffered=False)
        for chunk in response.iter_encoded():
            frames[n] += chunk.count(b"\n\n")
            if stop.is_set():
                break
        response.close()

    threads = [threading.Thread(target=tab, args=(n,), daemon=True) for n in range(count)]
    for thread in threads:
        thread.start()
    ready.set()
    started = time.process_time()
    stop.wait()
    report.put({"cpu_s": time.process_time() - started, "db_reads": shared_reads(app).computed, "frames": sum(frames)})


def measure(broker: Any, tmp: Path, name: str, tabs: int, niceness: int = 0) -> dict[str, Any]:
    """Batched ingest rate on a fresh database while tabs streams are open in another process."""
    db_path = tmp / f"{name}.db"
    spawn = multiprocessing.get_context("spawn")
    ready, stop, report = spawn.Event(), spawn.Event(), spawn.Queue()
    proc = None
    if tabs:
        proc = spawn.Process(target=tabs_process, args=(str(db_path), tabs, niceness, ready, stop, report))
        proc.start()
        if not ready.wait(120):
            raise RuntimeError("the tabs process did not start")
    started = time.monotonic()
    try:
        rate, sent, stored, cpu_us = bench_ingest.run_mode(broker, f"sqlite:///{db_path}", MESSAGES, 1000, 0.1, name, 1)
    finally:
        stop.set()
    elapsed = time.monotonic() - started
    figures: dict[str, Any] = {"rate": float(rate), "ingest_cpu_us_per_msg": round(cpu_us, 1)}
    if proc is not None:
        tab_figures = report.get(timeout=60)
        proc.join(30)
        figures.update(tabs_cpu_s=round(tab_figures["cpu_s"], 2), stream_db_reads_per_s=round(tab_figures["db_reads"] / elapsed, 1),
                       frames=tab_figures["frames"])
    if stored != sent:
        raise RuntimeError(f"{name}: stored {stored} of {sent}")
    return figures


def main() -> int:
    """Ingest alone, with the tabs open, and with the tabs at low priority, on one broker; figures and the JSON line."""
    with tempfile.TemporaryDirectory(prefix="bench-tabs-") as tmp_name:
        tmp = Path(tmp_name)
        broker = make_broker(tmp / "broker", devices=bench_ingest.DEVICES, start=False)
        settings = BrokerSettings(run_as="root", tls_bind="127.0.0.1", log_dest=f"file {broker.paths.log}",
                                  max_queued_messages=0, autosave_interval=60)
        render(broker.root, broker.port, broker.tls_port, settings)
        broker.start()
        try:
            alone = measure(broker, tmp, "tabs-none", 0)
            print(f"ingest alone:                 {alone['rate']:,.0f} msg/s ({alone['ingest_cpu_us_per_msg']} us CPU/msg)")
            tabs = measure(broker, tmp, "tabs-open", TABS)
            print(f"ingest with {TABS} tabs open:      {tabs['rate']:,.0f} msg/s ({tabs['ingest_cpu_us_per_msg']} us CPU/msg; "
                  f"tabs {tabs['tabs_cpu_s']} s CPU, {tabs['stream_db_reads_per_s']} stream reads/s)")
            niced = measure(broker, tmp, "tabs-niced", TABS, niceness=19)
            print(f"ingest with {TABS} tabs at nice 19: {niced['rate']:,.0f} msg/s ({niced['ingest_cpu_us_per_msg']} us CPU/msg)")
        finally:
            broker.close()
    ratio = tabs["rate"] / alone["rate"] if alone["rate"] else 0.0
    niced_ratio = niced["rate"] / alone["rate"] if alone["rate"] else 0.0
    print(json.dumps({"ingest_msgs_per_s": round(alone["rate"], 1), "ingest_with_tabs_msgs_per_s": round(tabs["rate"], 1),
                      "tabs": TABS, "ratio": round(ratio, 3), "within_10_percent": ratio >= 0.9,
                      "ratio_tabs_niced": round(niced_ratio, 3),
                      "ingest_cpu_us_per_msg": [alone["ingest_cpu_us_per_msg"], tabs["ingest_cpu_us_per_msg"],
                                                niced["ingest_cpu_us_per_msg"]],
                      "tabs_cpu_s": tabs["tabs_cpu_s"], "stream_db_reads_per_s": tabs["stream_db_reads_per_s"],
                      "cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
