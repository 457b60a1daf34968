"""`make demo`: the whole system on one machine: broker, dashboard (web + ingest), two edge nodes fed images."""

from __future__ import annotations

import argparse
import itertools
import json
import random
import os
import shutil
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from broker_config import BrokerSettings, add_dashboard, render  # noqa: E402
from contracts.confs import Confs, ConfsError, load_confs  # noqa: E402
from contracts.model_package import version_key  # noqa: E402
from scripts.demo_watch import SERVE_WITHIN_S, Monitor, NotServing, reason_from_log  # noqa: E402
from scripts.demo_stack import (  # noqa: E402
    PYTHON,
    ROOT,
    DemoError,
    Stack,
    choose_port,
    development_key,
    find_mosquitto,
    find_secret,
    run_cli,
    trusted_with,
    wait_for_port,
    write_json,
    write_secret,
)

NODES = ("edge-node-1", "edge-node-2")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument("--confs", type=Path, default=ROOT / "confs.json")
    parser.add_argument("--data", type=Path, default=Path(os.environ["DATA"]) if os.environ.get("DATA") else None,
                        help="folder of images (one folder per class); default ../shared/datasets/all-aria")
    parser.add_argument("--package", type=Path, help="model package for the nodes; default: newest in models/")
    parser.add_argument("--state", type=Path, default=ROOT / "var" / "demo", help="where state and logs go")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between images per node")
    parser.add_argument("--duration", type=float, help="stop by itself after this many seconds")
    return parser.parse_args(argv)


def released_package(explicit: Path | None) -> Path:
    """The package to serve: the given one, else the highest version under models/."""
    if explicit:
        if not explicit.is_file():
            raise DemoError(f"--package {explicit} does not exist")
        return explicit.resolve()
    found = sorted((ROOT / "models").glob("*.tar.gz"), key=lambda p: version_key(p.name.rsplit("-", 1)[-1][:-7])
                   if p.name.rsplit("-", 1)[-1][:-7].count(".") == 2 else (0, 0, 0))
    if not found:
        raise DemoError("no model package in models/: run `make train` or pass --package PATH")
    return found[-1]


def image_source(data: Path | None) -> list[Path]:
    """Images to feed the nodes, or an empty list with a clear note."""
    candidate = data or (ROOT.parent / "shared" / "datasets" / "all-aria")
    if not candidate.is_dir():
        where = f"{data}" if data else "../shared/datasets/all-aria"
        print(f"  no images: {where} is not a folder. The nodes will run and report telemetry, but classify\n"
              "  nothing until you drop images into their inbox folders or pass DATA=DIR. The dataset is\n"
              "  'Acute Lymphoblastic Leukemia (ALL) image dataset' (Aria et al., Kaggle mehradaria/leukemia).")
        return []
    images = sorted(p for p in candidate.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    random.Random(0).shuffle(images)  # every class shows up in the first minute, not Benign first
    print(f"  feeding images from {candidate} ({len(images)} found)")
    return images


def broker_user(broker_dir: Path) -> str:
    """Drop to `mosquitto` when started as root and the folders let it in; otherwise keep the current user."""
    if os.geteuid() != 0:
        return os.environ.get("USER", "nobody")
    reachable = all(os.stat(p).st_mode & 0o001 for p in broker_dir.resolve().parents)
    return "mosquitto" if reachable else "root"


def start_broker(stack: Stack, confs: Confs, taken: set[int]) -> tuple[int, Path]:
    """Render the project's broker config with fresh accounts and TLS, and start Mosquitto."""
    plain = choose_port(confs.mqtt.port if not confs.mqtt.tls else 1883, "MQTT broker", "mqtt.port", taken)
    tls = choose_port(8883, "MQTT broker (TLS)", "the broker's TLS port", taken)
    broker_dir = stack.state / "broker"
    run_as = broker_user(broker_dir)
    paths = render(broker_dir, plain, tls, BrokerSettings(run_as=run_as, plain_bind="127.0.0.1"))
    process = stack.start("mosquitto", [find_mosquitto(), "-c", str(paths.conf)])
    wait_for_port(plain, process, "MQTT broker", stack.log_path("mosquitto"))
    print(f"  broker: mqtt://127.0.0.1:{plain} and mqtts://localhost:{tls} (no anonymous access, ACL per device)")
    return plain, broker_dir


def dashboard_confs(confs: Confs, stack: Stack, mqtt_port: int, http_port: int, trusted: list[str]) -> Path:
    """A confs.json for the dashboard processes, pointing at the demo's broker, database and folders."""
    data = confs.model_dump(mode="json")
    data["ota"]["trusted_public_keys"] = trusted
    data["mqtt"].update(host="127.0.0.1", port=mqtt_port, tls=False, ca_file=None, password_file=None)
    data["dashboard"].update(
        database_url=f"sqlite:///{stack.state / 'dashboard.db'}",
        http_port=http_port,
        public_url=f"http://127.0.0.1:{http_port}",
        secret_key_file=str(stack.state / "secret_key"),
        package_dir=str(stack.state / "packages"),
    )
    return write_json(stack.state / "dashboard-confs.json", data)


def start_dashboard(stack: Stack, confs: Confs, mqtt_port: int, broker_dir: Path, package: Path,
                    taken: set[int], trusted: list[str]) -> tuple[dict[str, str], str, int]:
    """Create the database, an admin, the nodes' accounts and the release; start ingest and the web app."""
    http_port = choose_port(confs.dashboard.http_port, "dashboard", "dashboard.http_port", taken)
    confs_path = dashboard_confs(confs, stack, mqtt_port, http_port, trusted)
    password = add_dashboard(broker_dir, confs.dashboard.app_id, app=confs.dashboard.app_id,
                             locations=(confs.identity.location,))
    env = {"DASHBOARD_CONFS": str(confs_path), "BROKER_CONFIG_DIR": str(broker_dir), "MQTT_PASSWORD": password}
    flask = [PYTHON, "-m", "flask", "--app", "dashboard"]
    run_cli(flask + ["init-db"], env, "creating the dashboard database")
    admin_password = find_secret(run_cli(flask + ["create-admin", "admin"], env, "creating the admin"), "(shown once)")
    tokens = {}
    for node in NODES:
        output = run_cli(flask + ["add-device", node, "--zone", confs.identity.zone, "--reload-broker"], env,
                         f"registering {node}")
        tokens[node] = find_secret(output, "download token")
    run_cli(flask + ["register-model", str(package)], env, "registering the released model")
    stack.start("dashboard-ingest", [PYTHON, "-m", "dashboard.ingest", "--confs", str(confs_path), "--workers", "auto"], env)
    web = stack.start("dashboard-web", [
        PYTHON, "-m", "gunicorn", "--config", "python:dashboard.gunicorn_conf", "--bind", f"127.0.0.1:{http_port}",
        "--workers", "1", "dashboard:create_app()",
    ], env)
    wait_for_port(http_port, web, "dashboard web app", stack.log_path("dashboard-web"), timeout=60)
    return tokens, admin_password, http_port


def start_node(stack: Stack, confs: Confs, node: str, index: int, mqtt_port: int, broker_dir: Path,
               token: str, package: Path, taken: set[int], trusted: list[str]) -> Path:
    """Write a node's confs and secrets and start it; returns its inbox folder."""
    from broker_config import read_credentials

    home = stack.state / node
    data = confs.model_dump(mode="json")
    data["ota"]["trusted_public_keys"] = trusted
    http_port = choose_port(confs.edge_node.http_port + index, f"{node} HTTP endpoint", "edge_node.http_port", taken)
    data["mqtt"].update(host="127.0.0.1", port=mqtt_port, tls=False, ca_file=None,
                        password_file=write_secret(home / "secrets" / "mqtt_password", read_credentials(broker_dir)[node]))
    data["edge_node"].update(
        device_id=node, model_store=str(home / "models"), initial_package=str(package),
        outbox_path=str(home / "outbox.db"), http_port=http_port,
        token_file=write_secret(home / "secrets" / "token", token),
    )
    data["edge_node"]["inputs"].update(watch_dir=str(home / "inbox"))
    confs_path = write_json(home / "confs.json", data)
    (home / "inbox").mkdir(parents=True, exist_ok=True)
    env = {"MQTT_PASSWORD": "", "EDGE_TOKEN": ""}
    process = stack.start(node, [PYTHON, "-m", "edge_node", "run", "--confs", str(confs_path)], env)
    try:
        wait_for_port(http_port, process, node, stack.log_path(node), timeout=90)
    except DemoError:
        if process.poll() is None:
            raise
        why = reason_from_log(stack.log_path(node)) or f"see {stack.log_path(node)}"
        raise NotServing(f"  {node} serves nothing: exited with code {process.returncode} at start: {why}") from None
    return home / "inbox"


def feed(stack: Stack, monitor: Monitor, inboxes: dict[str, Path], images: list[Path], interval: float,
         deadline: float | None) -> None:
    """Copy images into the running nodes' inboxes in turn (complete files only) until stopped, watching as it goes."""
    pictures = itertools.cycle(images) if images else None
    count = 0
    while deadline is None or time.monotonic() < deadline:
        stack.check_alive(ignore=inboxes)
        monitor.check()
        if not monitor.alive():
            raise DemoError("every node has stopped")
        if pictures is not None:
            for node in monitor.alive():
                image = next(pictures)
                count += 1
                partial = inboxes[node] / f"sample-{count:06d}{image.suffix.lower()}.part"
                shutil.copyfile(image, partial)
                partial.rename(partial.with_suffix(""))
        time.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    """Start everything, print where to look, run until Ctrl-C (or --duration), stop cleanly."""
    args = parse_args(argv)
    try:
        confs = load_confs(args.confs)
    except ConfsError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    if args.state.exists():
        shutil.rmtree(args.state)
    args.state.mkdir(parents=True)
    stack = Stack(args.state)
    stopped_by = "Ctrl-C"

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopped_by
        stopped_by = signal.Signals(signum).name
        raise KeyboardInterrupt

    # Installed explicitly: a shell starting the demo in the background (CI, nohup ... &) leaves SIGINT ignored,
    # and Python then never turns Ctrl-C or `kill -INT` into KeyboardInterrupt.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    taken: set[int] = set()
    monitor: Monitor | None = None
    code = 0
    try:
        print(f"Starting the demo (state and logs in {args.state}):")
        package = released_package(args.package)
        print(f"  model package: {package.relative_to(ROOT) if package.is_relative_to(ROOT) else package}")
        key_path, dev_key = development_key(confs.trainer.signing_key)
        trusted = trusted_with(list(confs.ota.trusted_public_keys), dev_key)
        print(f"  trusted: the development signing key {key_path} ({dev_key}); "
              f"packages made with `python -m trainer package` can be uploaded")
        mqtt_port, broker_dir = start_broker(stack, confs, taken)
        tokens, admin_password, http_port = start_dashboard(stack, confs, mqtt_port, broker_dir, package, taken, trusted)
        monitor = Monitor(stack.state / "dashboard.db", {}, stack.log_path, expect_results=False, expected=len(NODES))
        inboxes = {}
        for i, node in enumerate(NODES):
            inboxes[node] = start_node(stack, confs, node, i, mqtt_port, broker_dir, tokens[node], package, taken,
                                       trusted)
            monitor.nodes[node] = stack.processes[-1][1]
        images = image_source(args.data)
        print(f"\n  Dashboard: http://localhost:{http_port}/   login: admin / {admin_password}")
        print(f"  Nodes' inboxes (drop images here): {', '.join(str(p) for p in inboxes.values())}")
        print(f"  Every node must store a result within {SERVE_WITHIN_S:.0f} s. Press Ctrl-C to stop everything.\n",
              flush=True)
        monitor.expect_results, monitor.started = bool(images), time.monotonic()
        feed(stack, monitor, inboxes, images, args.interval, time.monotonic() + args.duration if args.duration else None)
        if monitor.gone:
            print("demo: " + "; ".join(f"{name} {why}" for name, why in monitor.gone.items()), file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        print(f"\nStopping ({stopped_by}):", flush=True)
    except NotServing as exc:
        print(f"\ndemo: a node cannot serve the model:\n{exc}", file=sys.stderr)
        code = 1
    except (DemoError, OSError, ValueError) as exc:
        print(f"\ndemo: {exc}", file=sys.stderr)
        code = 1
    finally:
        # The processes run in their own sessions: whatever ended the demo, even a bug, must not orphan them,
        # and a second Ctrl-C must not cut the stopping short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
    print("Everything stopped.")
    if monitor is not None:
        print(json.dumps(monitor.summary()), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
