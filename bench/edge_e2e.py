"""Edge end to end: an image file dropped into the watched folder → its result acknowledged by the broker (PUBACK).

Runs a real Mosquitto (the project's broker config, via the test harness) and a real node in this
process, drops images one at a time and times each from the file's close to the PUBACK of its
Sensors message. Uses the released package in models/ when one verifies, else the tiny test package.
Prints figures, then one JSON line: {"p50_ms", "p99_ms", "n"}.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from broker_harness import make_broker  # noqa: E402
from contracts.confs import load_confs, parse_confs  # noqa: E402
from contracts.model_package import (  # noqa: E402
    PackageError,
    load_private_key,
    parse_public_key,
    public_key_text,
    read_manifest,
    version_key,
)
from edge_node.node import EdgeNode, Secrets  # noqa: E402
from support.tiny_package import CLASSES, class_image, make_tiny_package  # noqa: E402


def released_package() -> tuple[Path, str] | None:
    """The highest-versioned package in models/ with a key that verifies it, or None."""
    confs = load_confs(ROOT / "confs.json")
    keys = list(confs.ota.trusted_public_keys)
    signing_key = ROOT / confs.trainer.signing_key
    if signing_key.is_file():
        keys.append(public_key_text(load_private_key(signing_key)))
    released = [p for p in (ROOT / "models").glob("*.tar.gz") if p.name[: -len(".tar.gz")].rsplit("-", 1)[-1].count(".") == 2]
    for package in sorted(released, key=lambda p: version_key(p.name[: -len(".tar.gz")].rsplit("-", 1)[-1]), reverse=True):
        for key in keys:
            try:
                read_manifest(package, [parse_public_key(key)])
            except PackageError:
                continue
            return package, key
    return None


def jpegs(count: int, size: int) -> list[bytes]:
    """Distinct synthetic JPEGs of the four classes."""
    out = []
    for i in range(count):
        buffer = io.BytesIO()
        Image.fromarray(class_image(CLASSES[i % 4], size=size, seed=i)).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def node_confs(work: Path, broker_port: int, device: str, package: Path, key: str) -> str:
    """confs.json text for a node with only the watched folder enabled."""
    data = json.loads((ROOT / "confs.json").read_text())
    data["mqtt"].update(host="127.0.0.1", port=broker_port, tls=False, ca_file=None, password_file=None)
    data["edge_node"].update(
        device_id=device,
        inputs={"watch_dir": str(work / "inbox"), "http": False, "camera": None, "camera_interval_s": 5.0},
        model_store=str(work / "models"),
        initial_package=str(package),
        outbox_path=str(work / "outbox.db"),
        life_interval_s=3600.0,
    )
    data["ota"]["trusted_public_keys"] = [key]
    return json.dumps(data)


def run(count: int, warmup: int, size: int) -> dict[str, float | int]:
    with tempfile.TemporaryDirectory(prefix="edge-e2e-") as tmp:
        work = Path(tmp)
        found = released_package()
        if found is None:
            private = Ed25519PrivateKey.generate()
            package, key = make_tiny_package(work / "dist", private), public_key_text(private)
            print("model: tiny test package (no verified release in models/)")
        else:
            package, key = found
            print(f"model: {package.name}")
        broker = make_broker(work / "broker")
        try:
            confs = parse_confs(node_confs(work, broker.port, "devA", package, key))
            node = EdgeNode(confs, Secrets(broker.credentials["devA"], None))
            acked = threading.Semaphore(0)
            node.start()
            if not node.link.wait_connected(15):
                raise RuntimeError("node did not connect")
            time.sleep(0.5)  # let the birth Status PUBACK pass before counting acknowledgements
            node.link.add_ack_listener(lambda mid, ok, reason: acked.release())
            inbox = Path(confs.edge_node.inputs.watch_dir or "")
            timings = []
            for i, data in enumerate(jpegs(count + warmup, size)):
                started = time.perf_counter()
                with open(inbox / f"img{i:05d}.jpg", "wb") as handle:
                    handle.write(data)
                if not acked.acquire(timeout=30):
                    raise RuntimeError(f"image {i} was never acknowledged")
                if i >= warmup:
                    timings.append((time.perf_counter() - started) * 1000.0)
            node.shutdown()
        finally:
            broker.close()
    values = np.array(timings)
    return {"p50_ms": round(float(np.percentile(values, 50)), 2), "p99_ms": round(float(np.percentile(values, 99)), 2),
            "n": len(timings)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--size", type=int, default=224, help="edge of the square test images, pixels")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.pop("MQTT_PASSWORD", None)
    figures = run(args.images, args.warmup, args.size)
    print(f"drop → PUBACK over {figures['n']} images: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms "
          "(target p50 < 20 ms)")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
