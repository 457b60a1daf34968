"""The rollout half of bench/fleet.py: a signed release rolled out by the real engine, downloads counted."""

from __future__ import annotations

import argparse
import signal
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from werkzeug.serving import make_server

from edge_node.simulate.fleet import fleet_device_ids

if TYPE_CHECKING:
    from fleet import Bench


def wait_for(probe: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    """Poll until probe() is truthy; RuntimeError naming what otherwise."""
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:.0f}s")
        time.sleep(every)
    return value


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


def rollout(bench: "Bench", args: argparse.Namespace, v1: Path, v2: Path) -> dict[str, Any]:
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
        active = "SELECT COUNT(*) FROM rollout_targets WHERE rollout_id = :rollout AND state = 'ACTIVE'"
        wait_for(lambda: bench.query(active, {"rollout": rollout_id})[0][0] == len(ids), 900, "every target ACTIVE", 0.2)
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
