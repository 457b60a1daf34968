"""Fleet benchmark: simulated nodes through the real broker into the real ingest, then a real rollout.

Part 1: `--nodes` nodes send Life every second and a result every 5 seconds for `--duration` seconds: by default
light nodes (`python -m edge_node.simulate.traffic`: real MQTT 5 sessions and contract payloads, no model or
outbox, tens of µs a message), with `--simulator full` virtual nodes (`python -m edge_node.simulate --cheap`, each
with its outbox, OTA agent and stand-in classifier, about 2 ms a message), in processes of `--nodes-per-process`;
the ingest (`python -m dashboard.ingest`, as shipped: one worker per usable core) stores them in
SQLite, or with `--database postgresql` in a throw-away PostgreSQL cluster. Figures: rows stored per
second, lag (the row's received_at minus the message's sent_at, made on the node before its outbox) p50
and p99, ingest lag p50 and p99 (the same for a probe node outside the simulators that publishes a result
every 0.1 s stamped just before publishing: broker plus ingest alone), lost (sent minus stored), CPU
seconds of broker, ingest and simulators, and the simulators' late ticks (a Life or result due more than
one period ago: the simulator, not the ingest, was behind). The nodes stand in for other machines: on one
machine they must not take the CPU the broker and ingest need, hence the light generator and their niceness.
Part 2 (bench/fleet_parts/rollout.py): a signed release is rolled out by the dashboard's rollout engine to
`--rollout-nodes` other virtual nodes (always full ones: they need real OTA agents), which download it from the dashboard's package route. Figures:
seconds until every target is ACTIVE and package bytes served per node. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

import psutil  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from sqlalchemy import create_engine, select, text  # noqa: E402

from broker_config import add_devices  # noqa: E402
from broker_harness import BrokerHandle, DeviceInfo, free_port, make_broker  # noqa: E402
from contracts.model_package import public_key_text  # noqa: E402
from dashboard.ingest.supervise import usable_cores  # noqa: E402
from dashboard.models import Classification  # noqa: E402
from edge_node.simulate.fleet import fleet_device_ids  # noqa: E402
from fleet_parts.probe import PROBE_DEVICE, Probe  # noqa: E402
from fleet_parts.rollout import rollout, wait_for  # noqa: E402
from support.pg_cluster import postgres_cluster  # noqa: E402
from support.tiny_package import make_tiny_package  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500, help="virtual nodes streaming (default 500)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds they stream (default 60)")
    parser.add_argument("--rollout-nodes", type=int, default=100, help="virtual nodes updated (default 100; 0 skips)")
    parser.add_argument("--rate", type=float, default=0.2, help="results per node per second (default 0.2)")
    parser.add_argument("--life-interval", type=float, default=1.0, help="seconds between Life messages (default 1)")
    parser.add_argument("--work-dir", type=Path, help="keep broker, database and logs here (default: temporary)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite",
                        help="sqlite (default) or postgresql (a throw-away cluster on a free port)")
    parser.add_argument("--simulator-nice", type=int, default=10, metavar="N",
                        help="run the simulators at this niceness (default 10): on a shared machine they stand in for "
                        "other machines and must not take the CPU the broker and ingest need (0: same priority)")
    parser.add_argument("--simulator", choices=("light", "full"), default="light",
                        help="the streaming nodes: light (default; edge_node.simulate.traffic) or full virtual nodes "
                        "(edge_node.simulate --cheap, about 2 ms of CPU a message)")
    parser.add_argument("--nodes-per-process", type=int,
                        help="nodes per simulator process (default 500 full, 2500 light: one process's GIL bounds its rate)")
    args = parser.parse_args(argv)
    if args.nodes_per_process is None:
        args.nodes_per_process = 500 if args.simulator == "full" else 2500
    if (args.nodes < 1 or args.duration <= 0 or args.rollout_nodes < 0 or args.rate <= 0 or args.life_interval <= 0
            or args.nodes_per_process < 1):
        parser.error("--nodes ≥ 1, --duration > 0, --rollout-nodes ≥ 0, --rate > 0, --life-interval > 0 and "
                     "--nodes-per-process ≥ 1")
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


def stream_ids(nodes: int, per_process: int) -> list[tuple[str, list[str]]]:
    """The streaming fleet split into simulator processes: (device prefix, its ids) for each."""
    parts = [min(per_process, nodes - start) for start in range(0, nodes, per_process)]
    return [(f"fleet-p{n}", fleet_device_ids(f"fleet-p{n}", count)) for n, count in enumerate(parts, 1)]


class Bench:
    """Owns the processes of one run; `close()` stops them by PID."""

    def __init__(self, work: Path, broker: BrokerHandle, web_port: int, key: Ed25519PrivateKey, db_url: str) -> None:
        self.work = work
        self.broker = broker
        self.db_url = db_url
        self.engine = create_engine(db_url)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.simulator_nice = 0
        raw = json.loads((REPO / "confs.json").read_text())
        raw["mqtt"].update(host=broker.host, port=broker.port, tls=False, ca_file=None, password_file=None)
        raw["identity"].update(location=broker.location, zone=broker.zone)
        raw["dashboard"].update(
            database_url=db_url, secret_key_file=str(work / "secret_key"),
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
        """The ingest as shipped: `--workers auto`, the first worker running the rollout engine."""
        password = self.broker.credentials[self.broker.dashboard_user]
        return self.start("ingest", [sys.executable, "-m", "dashboard.ingest", "--confs", str(self.confs_path)],
                          {"MQTT_PASSWORD": password})

    def start_fleet(self, name: str, ids: list[str], prefix: str, args: list[str], tokens: dict[str, str] | None,
                    package: Path) -> subprocess.Popen[bytes]:
        """A `python -m edge_node.simulate` process for ids."""
        creds = self.work / f"{name}-credentials.json"
        creds.write_text(json.dumps({d: self.broker.credentials[d] for d in ids}))
        creds.chmod(0o600)
        argv = [*(["nice", "-n", str(self.simulator_nice)] if self.simulator_nice else []), sys.executable, "-m", "edge_node.simulate", "--nodes", str(len(ids)), "--device-prefix", prefix,
                "--confs", str(self.confs_path), "--credentials", str(creds), "--initial-package", str(package),
                "--work-dir", str(self.work / name), "--cheap", *args]
        if tokens is not None:
            (self.work / f"{name}-tokens.json").write_text(json.dumps(tokens))
            argv += ["--tokens", str(self.work / f"{name}-tokens.json")]
        return self.start(name, argv)

    def start_traffic(self, name: str, ids: list[str], prefix: str, args: list[str], package: Path) -> subprocess.Popen[bytes]:
        """A `python -m edge_node.simulate.traffic` process (light nodes) for ids."""
        creds = self.work / f"{name}-credentials.json"
        creds.write_text(json.dumps({d: self.broker.credentials[d] for d in ids}))
        creds.chmod(0o600)
        argv = [*(["nice", "-n", str(self.simulator_nice)] if self.simulator_nice else []), sys.executable, "-m",
                "edge_node.simulate.traffic", "--nodes", str(len(ids)), "--device-prefix", prefix, "--confs",
                str(self.confs_path), "--credentials", str(creds), "--initial-package", str(package), *args]
        return self.start(name, argv)

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Read the dashboard database directly."""
        with self.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql), params or {})]

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
        self.engine.dispose()


def last_json_line(log: Path) -> dict[str, Any]:
    """The last JSON object line a process printed."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON summary in {log}:\n{log.read_text(errors='replace')[-2000:]}")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds a process and its children have used so far (0 if it is gone)."""
    if not pid:
        return 0.0
    try:
        process = psutil.Process(pid)
        total = 0.0
        for each in [process, *process.children(recursive=True)]:
            times = each.cpu_times()
            total += times.user + times.system
        return total
    except psutil.Error:
        return 0.0


def stream(bench: Bench, args: argparse.Namespace, package: Path) -> dict[str, Any]:
    """Part 1: the fleet streams for duration seconds; returns the stream figures."""
    parts = stream_ids(args.nodes, args.nodes_per_process)
    ingest_pid = bench.processes[0].pid
    cpu_before = cpu_seconds(bench.broker.pid), cpu_seconds(ingest_pid)
    print(f"streaming: {args.nodes} {args.simulator} nodes in {len(parts)} simulator process(es), Life every {args.life_interval:g} s, "
          f"a result every {1 / args.rate:g} s, for {args.duration:g} s", flush=True)
    load_start = os.getloadavg()
    probe = Probe(bench.broker)
    probe.start()
    rates = ["--rate", str(args.rate), "--life-interval", str(args.life_interval), "--duration", str(args.duration)]
    if args.simulator == "full":
        fleets = [bench.start_fleet(f"stream-{prefix}", ids, prefix, rates, None, package) for prefix, ids in parts]
    else:
        fleets = [bench.start_traffic(f"stream-{prefix}", ids, prefix, rates, package) for prefix, ids in parts]
    sim_cpu = 0.0
    while any(fleet.poll() is None for fleet in fleets):
        sim_cpu = max(sim_cpu, sum(cpu_seconds(fleet.pid) for fleet in fleets))  # read before they exit
        time.sleep(1.0)
    load_end = os.getloadavg()
    probe_sent = probe.stop()
    if any(fleet.returncode != 0 for fleet in fleets):
        raise RuntimeError(f"a simulator failed; see {bench.work}/stream-*.log")
    summaries = [last_json_line(bench.work / f"stream-{prefix}.log") for prefix, _ in parts]
    sent_results = sum(int(each["results_stored"]) for each in summaries)
    sent_life = sum(int(each["life_sent"]) for each in summaries)
    late_ticks, connected = sum(int(each["late_ticks"]) for each in summaries), sum(int(each["connected"]) for each in summaries)

    def counts() -> tuple[int, int, int]:
        results = bench.query("SELECT COUNT(*) FROM classifications WHERE device_id LIKE 'fleet-%'")[0][0]
        life = bench.query("SELECT COUNT(*) FROM telemetry WHERE device_id LIKE 'fleet-%'")[0][0]
        probed = bench.query("SELECT COUNT(*) FROM classifications WHERE device_id = :d", {"d": PROBE_DEVICE})[0][0]
        return int(results), int(life), int(probed)

    # The ingest may still be draining: wait until it has everything, or until nothing new arrives for 15 s.
    last, still_since = counts(), time.monotonic()
    while last[0] < sent_results or last[1] < sent_life or last[2] < probe_sent:
        time.sleep(1.0)
        now = counts()
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since > 15:
            break
    stored_results, stored_life, _ = last
    broker_cpu, ingest_cpu = cpu_seconds(bench.broker.pid) - cpu_before[0], cpu_seconds(ingest_pid) - cpu_before[1]
    with bench.engine.connect() as connection:
        rows = connection.execute(select(Classification.sent_at, Classification.received_at)
                                  .where(Classification.device_id.like("fleet-%"))).all()
        probed = connection.execute(select(Classification.sent_at, Classification.received_at)
                                    .where(Classification.device_id == PROBE_DEVICE)).all()
    lags = [(received - sent).total_seconds() * 1000 for sent, received in rows]
    probe_lags = [(received - sent).total_seconds() * 1000 for sent, received in probed]
    lost = max(0, sent_results - stored_results) + max(0, sent_life - stored_life) + max(0, probe_sent - len(probed))
    expected = args.nodes * args.duration * (1 / args.life_interval + args.rate)
    print(f"  sent {sent_results} results + {sent_life} Life (of about {expected:.0f} due); stored {stored_results} + "
          f"{stored_life}; connected {connected}/{args.nodes}; late simulator ticks {late_ticks}", flush=True)
    return {
        "nodes": args.nodes,
        "database": args.database,
        "ingest_workers": usable_cores(),
        "simulator": args.simulator,
        "simulator_processes": len(parts),
        "simulator_nice": args.simulator_nice,
        "stored_per_s": round((stored_results + stored_life) / args.duration, 1),
        "lag_p50_ms": round(percentile(lags, 0.50), 1),
        "lag_p99_ms": round(percentile(lags, 0.99), 1),
        "ingest_lag_p50_ms": round(percentile(probe_lags, 0.50), 1),
        "ingest_lag_p99_ms": round(percentile(probe_lags, 0.99), 1),
        "probe_sent": probe_sent,
        "probe_stored": len(probed),
        "lost": lost,
        "results_sent": sent_results,
        "results_stored": stored_results,
        "life_sent": sent_life,
        "life_stored": stored_life,
        "sent_of_due": round((sent_results + sent_life) / expected, 3),
        "late_simulator_ticks": late_ticks,
        "broker_cpu_s": round(broker_cpu, 1),
        "ingest_cpu_s": round(ingest_cpu, 1),
        "simulator_cpu_s": round(sim_cpu, 1),
        "load_start": [round(x, 2) for x in load_start],
        "load_end": [round(x, 2) for x in load_end],
    }


def main(argv: list[str] | None = None) -> int:
    """Provision, start broker and ingest, stream, roll out; print the JSON line."""
    args = parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access line per package download is noise
    threading.stack_size(512 * 1024)
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp, contextlib.ExitStack() as stack:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.database == "postgresql":
            db_url = stack.enter_context(postgres_cluster()).create_database("dashboard")
        else:
            db_url = f"sqlite:///{work / 'dashboard.db'}"
        key = Ed25519PrivateKey.generate()
        v1 = make_tiny_package(work / "pkg-v1", key, "1.0.0")
        v2 = make_tiny_package(work / "pkg-v2", key, "1.1.0", seed=1)
        # The production persistence setting (the harness saves every second, for tests) and client ids bound to
        # accounts, as production renders them (each ingest worker logs in as its own account).
        settings = {"max_queued_messages": 100_000, "autosave_interval": 60, "bind_client_id": True}
        broker = make_broker(work / "broker", devices=(), settings=settings)
        bench = Bench(work, broker, free_port(), key, db_url)
        bench.simulator_nice = args.simulator_nice
        try:
            started = time.monotonic()
            streaming = [d for _, ids in stream_ids(args.nodes, args.nodes_per_process) for d in ids]
            provision(broker, [*streaming, PROBE_DEVICE, *fleet_device_ids("roll", args.rollout_nodes)])
            print(f"{args.nodes + args.rollout_nodes} broker accounts in {time.monotonic() - started:.1f} s", flush=True)
            from dashboard.db import Database
            from dashboard.migrations import upgrade_database

            database = Database(db_url)
            upgrade_database(database.engine)
            database.dispose()
            bench.start_ingest()
            workers = usable_cores()
            wait_for(lambda: (work / "ingest.log").read_text().count("subscribing") >= workers, 60,
                     "every ingest worker to subscribe")
            time.sleep(1.0)  # its subscription is made right after connecting
            figures: dict[str, Any] = stream(bench, args, v1)
            if args.rollout_nodes:
                figures |= rollout(bench, args, v1, v2)
        finally:
            bench.close()
            broker.close()
    print(json.dumps(figures), flush=True)
    return 0 if figures["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
