"""What the running system must do: inbox image to stored result, a rollout between containers, a broker crash that loses nothing."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from contracts.model_package import build_package, parse_public_key, unpack_package

from .dashboard_client import Dashboard
from .engine import run
from .stack import NODES, Stack

logger = logging.getLogger(__name__)

DATASET = Path("../shared/datasets/all-aria")
SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


class ProofFailed(AssertionError):
    """The system did not do what it must."""


def sample_images(root: Path, out: Path, count: int) -> list[Path]:
    """count distinct images: real ones from the dataset if it is there (copied, never committed), else synthetic PNGs."""
    out.mkdir(parents=True, exist_ok=True)
    dataset = (root / DATASET).resolve()
    real = sorted(p for p in dataset.rglob("*") if p.suffix.lower() in SUFFIXES)[:: 7] if dataset.is_dir() else []
    images = []
    for index in range(count):
        if index < len(real):
            target = out / f"sample-{index:03d}{real[index].suffix.lower()}"
            shutil.copy(real[index], target)
        else:
            pixels = np.random.default_rng(index).integers(0, 256, size=(224, 224, 3), dtype=np.uint8)
            target = out / f"sample-{index:03d}.png"
            Image.fromarray(pixels).save(target)
        images.append(target)
    return images


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def send(stack: Stack, node: str, image: Path) -> None:
    """Copy an image into a node's watched inbox."""
    run(["docker", "cp", str(image), f"{stack.container(node)}:/data/inbox/{image.name}"], env=stack.env)


def wait_for(what: str, check: Any, timeout_s: float, interval_s: float = 2.0) -> Any:
    """Poll check() until it returns something truthy; ProofFailed after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ProofFailed(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def counts_by_image(dashboard: Dashboard) -> Counter[str]:
    """How many stored results each image hash has."""
    return Counter(result["image_sha256"] for result in dashboard.results())


def inbox_result(stack: Stack, dashboard: Dashboard, image: Path, admin_password: str) -> dict[str, Any]:
    """An image copied into edge-node-1's inbox comes back as a stored result, on the results page too."""
    digest = sha256(image)
    send(stack, NODES[0], image)
    stored = wait_for("the inbox image's result", lambda: [r for r in dashboard.results() if r["image_sha256"] == digest], 180)
    dashboard.login("admin", admin_password)
    page = dashboard.page("/results")
    if stored[0]["sample_id"] not in page:
        raise ProofFailed(f"the results page does not show sample {stored[0]['sample_id']}")
    return {"device": stored[0]["device"], "label": stored[0]["label"], "model_version": stored[0]["model_version"],
            "results_page": True, "image": "dataset" if image.suffix != ".png" else "synthetic"}


def reversioned_package(stack: Stack, released: Path, version: str) -> Path:
    """The released package re-signed as another version with the run's throw-away key (no training needed)."""
    confs = json.loads((stack.root / "docker" / "confs.json").read_text())
    trusted = [parse_public_key(text) for text in confs["ota"]["trusted_public_keys"]]
    unpacked = stack.work / "package"
    shutil.rmtree(unpacked, ignore_errors=True)
    manifest = unpack_package(released, unpacked, trusted)
    files = {name: unpacked / name for name in manifest.files}
    out = stack.work / f"{manifest.name}-{version}.tar.gz"
    build_package(out, manifest.model_copy(update={"version": version, "files": {}}), files, stack.key)
    shutil.rmtree(unpacked, ignore_errors=True)
    return out


def rollout(stack: Stack, dashboard: Dashboard, released: Path, version: str) -> dict[str, Any]:
    """Upload a new version and roll it out to both nodes; both must report it ACTIVE and serve it."""
    release = dashboard.upload_release(reversioned_package(stack, released, version))
    created = dashboard.api("POST", "/rollouts", json={"release_id": release["id"], "targets": "all",
                                                        "canary_size": 1, "failure_threshold": 0})

    def finished() -> dict[str, Any] | None:
        state = dashboard.api("GET", f"/rollouts/{created['id']}")
        if state["state"] in ("HALTED", "ROLLED_BACK", "ROLLING_BACK"):
            raise ProofFailed(f"rollout {state['state']}: {state['reason']} {state['targets']}")
        return state if state["state"] == "COMPLETED" else None

    done = wait_for("the rollout to complete", finished, 420, 3)
    states = {target["device"]: target["state"] for target in done["targets"]}
    if states != {node: "ACTIVE" for node in NODES}:
        raise ProofFailed(f"rollout completed with {states}")
    def serving() -> dict[str, str] | None:
        versions = {d["id"]: d.get("model_version") for d in dashboard.api("GET", "/devices")["devices"]}
        return versions if all(versions.get(node) == version for node in NODES) else None

    wait_for("both nodes to report the new model", serving, 120)
    return {"version": version, "targets": states, "serving": True}


def broker_restart(stack: Stack, dashboard: Dashboard, images: list[Path], kill_after: int) -> dict[str, Any]:
    """Kill the broker while images stream in, start it again: every image yields exactly one stored result."""
    before = counts_by_image(dashboard)
    broker = stack.container("broker")
    killed_at = restarted_at = 0.0
    for index, image in enumerate(images):
        if index == kill_after:
            run(["docker", "kill", broker], env=stack.env)
            killed_at = time.monotonic()
        if index == kill_after + max(2, len(images) // 4):
            run(["docker", "start", broker], env=stack.env)
            restarted_at = time.monotonic()
        send(stack, NODES[index % len(NODES)], image)
        time.sleep(0.3)
    if not restarted_at:
        run(["docker", "start", broker], env=stack.env)
        restarted_at = time.monotonic()
    digests = [sha256(image) for image in images]
    wait_for("a result for every streamed image", lambda: all(counts_by_image(dashboard)[d] for d in digests), 300)
    time.sleep(10)  # late duplicates, if redelivery made any, arrive by now
    after = counts_by_image(dashboard)
    wrong = {d[:12]: after[d] for d in digests if after[d] != 1}
    if wrong or sum(after.values()) != sum(before.values()) + len(images):
        raise ProofFailed(f"results per image not exactly one: {wrong}; {sum(after.values())} stored, "
                          f"expected {sum(before.values()) + len(images)}")
    return {"images": len(images), "stored_once_each": True, "broker_down_s": round(restarted_at - killed_at, 1)}

