"""Fleet benchmark: simulated nodes through the real broker into the real ingest (SQLite), then a real rollout.

Part 1: `--nodes` virtual nodes (`python -m edge_node.simulate --cheap`) send Life every second and a
result every 5 seconds for `--duration` seconds; the ingest process (`python -m dashboard.ingest`)
stores them in SQLite. Figures: rows stored per second, ingest lag (the row's received_at minus the
message's sent_at) p50 and p99, and lost (sent minus stored).
Part 2: a signed release is rolled out by the dashboard's rollout engine (inside the ingest) to
`--rollout-nodes` other virtual nodes, which download it from the dashboard's package route (served
here by the real app, with a byte-counting WSGI wrapper). Figures: seconds until every target is
ACTIVE and package bytes served per node. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import psutil  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from broker_config import add_devices  # noqa: E402
from broker_harness import BrokerHandle, DeviceInfo, free_port, make_broker  # noqa: E402
from contracts.model_package import public_key_text  # noqa: E402
from edge_node.simulate.fleet import fleet_device_ids  # noqa: E402
from support.tiny_package import make_tiny_package  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500, help="virtual nodes streaming (default 500)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds they stream (default 60)")
    parser.add_argument("--rollout-nodes", type=int, default=100, help="virtual nodes updated (default 100; 0 skips)")
    parser.add_argument("--rate", type=float, default=0.2, help="results per node per second (default 0.2)")
    parser.add_argument("--life-interval", type=float, default=1.0, help="seconds between Life messages (default 1)")
    parser.add_argument("--work-dir", type=Path, help="keep broker, database and logs here (default: temporary)")
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.duration <= 0 or args.rollout_nodes < 0 or args.rate <= 0 or args.life_interval <= 0:
        parser.error("--nodes ≥ 1, --duration > 0, --rollout-nodes ≥ 0, --rate > 0 and --life-interval > 0")
    return args


def provision(broker: BrokerHandle, device_ids: list[str]) -> None:
    """Add every device to the live broker in one bulk write, then reload it."""
    passwords = add_devices(broker.root, [(d, broker.location, broker.zone) for d in device_ids])
    for device_id, password in passwords.items():
        broker.credentials[device_id] = password
        broker.devices[device_id] = DeviceInfo(device_id, broker.location, broker.zone, password)
    broker.reload()
    broker._wait_login(device_ids[-1], 10.0)


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of values (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


class ByteCounter:
    """WSGI wrapper counting response body bytes of package downloads."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.bytes = 0
        self.requests = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = self.app(environ, start_response)
        if not environ.get("PATH_INFO", "").startswith("/packages/"):
            return body
        with self._lock:
            self.requests += 1
        return self._count(body)

    def _count(self, body: Iterable[bytes]) -> Iterable[bytes]:
        try:
            for chunk in body:
                with self._lock:
                    self.bytes += len(chunk)
                yield chunk
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()


class Bench:
    """Owns the processes of one run; `close()` stops them by PID."""

    def __init__(self, work: Path, broker: BrokerHandle, web_port: int, key: Ed25519PrivateKey) -> None:
        self.work = work
        self.broker = broker
        self.db_path = work / "dashboard.db"
        self.processes: list[subprocess.Popen[bytes]] = []
        raw = json.loads((REPO / "confs.json").read_text())
        raw["mqtt"].update(host=broker.host, port=broker.port, tls=False, ca_file=None, password_file=None)
        raw["identity"].update(location=broker.location, zone=broker.zone)
        raw["dashboard"].update(
            database_url=f"sqlite:///{self.db_path}", secret_key_file=str(work / "secret_key"),
            package_dir=str(work / "packages"), public_url=f"http://127.0.0.1:{web_port}", app_id=broker.dashboard_app,
        )
        raw["ota"]["trusted_public_keys"] = [public_key_text(key)]
        self.confs_path = work / "confs.json"
        self.confs_path.write_text(json.dumps(raw, indent=2))
        self.env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY", "MQTT_PASSWORD")}
        self.env["PYTHONPATH"] = str(REPO)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a process logging to work/<name>.log."""
        with (self.work / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(argv, cwd=REPO, env={**self.env, **(env or {})}, stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def start_ingest(self) -> subprocess.Popen[bytes]:
        """The ingest process (with the rollout engine)."""
        password = self.broker.credentials[self.broker.dashboard_user]
        return self.start("ingest", [sys.executable, "-m", "dashboard.ingest", "--confs", str(self.confs_path)],
                          {"MQTT_PASSWORD": password})

    def start_fleet(self, name: str, ids: list[str], prefix: str, args: list[str], tokens: dict[str, str] | None,
                    package: Path) -> subprocess.Popen[bytes]:
        """A `python -m edge_node.simulate` process for ids."""
        creds = self.work / f"{name}-credentials.json"
        creds.write_text(json.dumps({d: self.broker.credentials[d] for d in ids}))
        creds.chmod(0o600)
        argv = [sys.executable, "-m", "edge_node.simulate", "--nodes", str(len(ids)), "--device-prefix", prefix,
                "--confs", str(self.confs_path), "--credentials", str(creds), "--initial-package", str(package),
                "--work-dir", str(self.work / name), "--cheap", *args]
        if tokens is not None:
            (self.work / f"{name}-tokens.json").write_text(json.dumps(tokens))
            argv += ["--tokens", str(self.work / f"{name}-tokens.json")]
        return self.start(name, argv)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read the dashboard database directly (read-only)."""
        with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30) as db:
            return db.execute(sql, params).fetchall()

    def close(self) -> None:
        """SIGTERM every process (newest first), SIGKILL what hangs."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def last_json_line(log: Path) -> dict[str, Any]:
    """The last JSON object line a process printed."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON summary in {log}:\n{log.read_text(errors='replace')[-2000:]}")


def wait_for(probe: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    """Poll until probe() is truthy; RuntimeError naming what otherwise."""
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:.0f}s")
        time.sleep(every)
    return value


def parse_time(text: str) -> datetime:
    """A naive-UTC timestamp as SQLite stores it."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds a process has used so far (0 if it is gone)."""
    try:
        times = psutil.Process(pid).cpu_times() if pid else None
    except psutil.Error:
        return 0.0
    return times.user + times.system if times else 0.0


def stream(bench: Bench, args: argparse.Namespace, package: Path) -> dict[str, Any]:
    """Part 1: the fleet streams for duration seconds; returns the stream figures."""
    ids = fleet_device_ids("fleet", args.nodes)
    ingest_pid = bench.processes[0].pid
    cpu_before = cpu_seconds(bench.broker.pid), cpu_seconds(ingest_pid)
    print(f"streaming: {args.nodes} nodes, Life every {args.life_interval:g} s, a result every "
          f"{1 / args.rate:g} s, for {args.duration:g} s", flush=True)
    fleet = bench.start_fleet("stream", ids, "fleet", ["--rate", str(args.rate), "--life-interval",
                              str(args.life_interval), "--duration", str(args.duration)], None, package)
    if fleet.wait(args.duration + 900) != 0:
        raise RuntimeError(f"the simulator failed; see {bench.work / 'stream.log'}")
    summary = last_json_line(bench.work / "stream.log")
    sent_results, sent_life = int(summary["results_stored"]), int(summary["life_sent"])

    def counts() -> tuple[int, int]:
        results = bench.query("SELECT COUNT(*) FROM classifications WHERE device_id LIKE 'fleet-%'")[0][0]
        life = bench.query("SELECT COUNT(*) FROM telemetry WHERE device_id LIKE 'fleet-%'")[0][0]
        return int(results), int(life)

    # The ingest may still be draining: wait until it has everything, or until nothing new arrives for 15 s.
    last, still_since = counts(), time.monotonic()
    while last[0] < sent_results or last[1] < sent_life:
        time.sleep(1.0)
        now = counts()
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since > 15:
            break
    stored_results, stored_life = last
    broker_cpu, ingest_cpu = cpu_seconds(bench.broker.pid) - cpu_before[0], cpu_seconds(ingest_pid) - cpu_before[1]
    rows = bench.query("SELECT sent_at, received_at FROM classifications WHERE device_id LIKE 'fleet-%'")
    lags = [(parse_time(received) - parse_time(sent)).total_seconds() * 1000 for sent, received in rows]
    lost = max(0, sent_results - stored_results) + max(0, sent_life - stored_life)
    print(f"  sent {sent_results} results + {sent_life} Life; stored {stored_results} + {stored_life}; "
          f"connected {summary['connected']}/{args.nodes}; late scheduler ticks {summary['late_ticks']}", flush=True)
    return {
        "nodes": args.nodes,
        "stored_per_s": round((stored_results + stored_life) / args.duration, 1),
        "lag_p50_ms": round(percentile(lags, 0.50), 1),
        "lag_p99_ms": round(percentile(lags, 0.99), 1),
        "lost": lost,
        "results_sent": sent_results,
        "results_stored": stored_results,
        "life_sent": sent_life,
        "life_stored": stored_life,
        "broker_cpu_s": round(broker_cpu, 1),
        "ingest_cpu_s": round(ingest_cpu, 1),
    }


def rollout(bench: Bench, args: argparse.Namespace, v1: Path, v2: Path) -> dict[str, Any]:
    """Part 2: roll v2 out to rollout-nodes virtual nodes through the real engine and package route."""
    from contracts.confs import load_confs
    from dashboard import create_app
    from dashboard.services import devices, releases, rollouts, tokens

    confs = load_confs(bench.confs_path)
    app = create_app(confs)
    counter = ByteCounter(app.wsgi_app)
    app.wsgi_app = counter  # type: ignore[method-assign]
    port = int(confs.dashboard.public_url.rsplit(":", 1)[1])
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, name="web", daemon=True).start()
    db = app.extensions["db"]
    ids = fleet_device_ids("roll", args.rollout_nodes)
    try:
        with db.session() as session:
            device_tokens = {}
            for device_id in ids:
                device = devices.register_device(session, device_id, bench.broker.location, bench.broker.zone)
                device_tokens[device_id] = tokens.create_device_token(session, device)
            release = releases.register_package(session, v2, confs.dashboard.package_dir,
                                                confs.ota.trusted_public_keys, confs.ota.max_package_bytes, "bench")
            release_id = release.id
        print(f"rollout: {len(ids)} nodes from 1.0.0 to 1.1.0 ({v2.stat().st_size} bytes)", flush=True)
        fleet = bench.start_fleet("rollout", ids, "roll", ["--rate", "0", "--life-interval", "5", "--duration",
                                  "3600", "--workers", "2"], device_tokens, v1)
        online = "SELECT COUNT(*) FROM devices WHERE id LIKE 'roll-%' AND state = 'ONLINE'"
        wait_for(lambda: bench.query(online)[0][0] == len(ids), 300, "every rollout node ONLINE")
        counter.bytes = counter.requests = 0
        started = time.monotonic()
        with db.session() as session:
            rollout_id = rollouts.create_rollout(session, release_id, "devices", ids, max(1, len(ids) // 10), 0,
                                                 "bench").id
        active = "SELECT COUNT(*) FROM rollout_targets WHERE rollout_id = ? AND state = 'ACTIVE'"
        wait_for(lambda: bench.query(active, (rollout_id,))[0][0] == len(ids), 900, "every target ACTIVE", 0.2)
        seconds = time.monotonic() - started
        fleet.send_signal(signal.SIGTERM)
        fleet.wait(120)
        print(f"  {counter.requests} package requests, {counter.bytes} bytes served in {seconds:.1f} s", flush=True)
        return {
            "rollout_nodes": len(ids),
            "rollout_s": round(seconds, 1),
            "bytes_per_node": round(counter.bytes / len(ids)),
            "package_bytes": v2.stat().st_size,
        }
    finally:
        server.shutdown()
        db.dispose()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access line per package download is noise
    threading.stack_size(512 * 1024)
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        v1 = make_tiny_package(work / "pkg-v1", key, "1.0.0")
        v2 = make_tiny_package(work / "pkg-v2", key, "1.1.0", seed=1)
        # The production persistence setting (the harness saves every second, for tests).
        settings = {"max_queued_messages": 100_000, "autosave_interval": 60}
        broker = make_broker(work / "broker", devices=(), settings=settings)
        bench = Bench(work, broker, free_port(), key)
        try:
            started = time.monotonic()
            provision(broker, fleet_device_ids("fleet", args.nodes) + fleet_device_ids("roll", args.rollout_nodes))
            print(f"{args.nodes + args.rollout_nodes} broker accounts in {time.monotonic() - started:.1f} s", flush=True)
            from dashboard.db import Database
            from dashboard.migrations import upgrade_database

            database = Database(f"sqlite:///{bench.db_path}")
            upgrade_database(database.engine)
            database.dispose()
            bench.start_ingest()
            wait_for(lambda: "subscribing" in (work / "ingest.log").read_text(), 60, "the ingest to subscribe")
            time.sleep(1.0)  # its subscription is made right after connecting
            figures = {"load_1min": round(os.getloadavg()[0], 2)}
            figures |= stream(bench, args, v1)
            if args.rollout_nodes:
                figures |= rollout(bench, args, v1, v2)
        finally:
            bench.close()
            broker.close()
    print(json.dumps(figures), flush=True)
    return 0 if figures["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
