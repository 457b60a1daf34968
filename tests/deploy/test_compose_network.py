"""Ports, host names and broker paths agree between compose, docker/confs.json and the rendered mosquitto.conf."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from deploy.compose_support import CONFS_TARGET, NODE_SERVICES, ROOT, mount_source, mounts, published

from contracts.confs import Confs

CLIENT_SERVICES = ("dashboard-web", "dashboard-ingest", *NODE_SERVICES)


def _listeners(conf: str) -> dict[int, str]:
    """Listener port -> bind address ('' for all interfaces) of a mosquitto.conf."""
    return {int(m[1]): m[2] for m in re.finditer(r"^listener (\d+) ?(\S*)$", conf, re.M)}


def _tls_port(conf: str) -> int:
    """Port of the listener block that carries a certificate."""
    current = None
    for line in conf.splitlines():
        if line.startswith("listener "):
            current = int(line.split()[1])
        elif line.startswith("certfile ") and current is not None:
            return current
    raise AssertionError("no TLS listener in mosquitto.conf")


def _directive(conf: str, key: str) -> str:
    match = re.search(rf"^{key} (.+)$", conf, re.M)
    assert match, f"{key} missing from mosquitto.conf"
    return match.group(1)


def test_clients_reach_the_broker_by_its_service_name_over_tls(docker_confs: Confs, services: dict[str, Any]) -> None:
    broker = services.get(docker_confs.mqtt.host, {})
    assert broker.get("build", {}).get("dockerfile") == "docker/broker.Dockerfile"
    assert docker_confs.mqtt.tls and docker_confs.mqtt.ca_file


def test_rendered_tls_listener_is_the_published_port_and_the_confs_port(
    docker_confs: Confs, services: dict[str, Any], rendered_broker: Path
) -> None:
    conf = (rendered_broker / "var/docker/broker/mosquitto.conf").read_text()
    listeners = _listeners(conf)
    tls_port = _tls_port(conf)
    assert tls_port == docker_confs.mqtt.port
    assert listeners[tls_port] == "", "the TLS listener must take connections from the compose network"
    assert set(published(services["broker"])) == {tls_port}


def test_plain_listener_is_loopback_only_and_is_what_the_healthcheck_probes(
    services: dict[str, Any], rendered_broker: Path
) -> None:
    conf = (rendered_broker / "var/docker/broker/mosquitto.conf").read_text()
    plain = [port for port, bind in _listeners(conf).items() if bind == "127.0.0.1"]
    assert len(plain) == 1 and plain[0] not in published(services["broker"])
    probe = services["broker"]["healthcheck"]["test"][-1]
    assert f"-h 127.0.0.1 -p {plain[0]} " in probe


def test_conf_paths_live_where_compose_mounts_the_config_and_data(
    services: dict[str, Any], rendered_broker: Path
) -> None:
    broker = services["broker"]
    conf = (rendered_broker / "var/docker/broker/mosquitto.conf").read_text()
    config_dir = broker["tmpfs"][0].split(":")[0]
    for key in ("password_file", "acl_file", "pid_file", "cafile", "certfile", "keyfile"):
        assert _directive(conf, key).startswith(config_dir + "/"), key
    data = next(m for m in mounts(broker) if m["type"] == "volume")
    assert _directive(conf, "persistence_location").rstrip("/") == data["target"]
    generated = next(m for m in mounts(broker) if m["source"] == "./var/docker/broker")
    assert generated["read_only"]


def test_server_certificate_names_the_broker_service(docker_confs: Confs, rendered_broker: Path) -> None:
    cert = x509.load_pem_x509_certificate((rendered_broker / "var/docker/broker/tls/server.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert docker_confs.mqtt.host in names


def test_every_client_mounts_the_ca_where_confs_expects_it(docker_confs: Confs, services: dict[str, Any]) -> None:
    for name in CLIENT_SERVICES:
        mount = mount_source(services[name], docker_confs.mqtt.ca_file or "")
        assert mount is not None and mount["read_only"], name
        assert mount["source"] == "./var/docker/broker/tls/ca.crt", name
        assert mount_source(services[name], CONFS_TARGET) is not None, name


def test_dashboard_port_agrees_with_gunicorn_compose_and_public_url(
    docker_confs: Confs, services: dict[str, Any]
) -> None:
    web = services["dashboard-web"]
    bind = web["command"][web["command"].index("--bind") + 1]
    assert bind == f"{docker_confs.dashboard.http_host}:{docker_confs.dashboard.http_port}"
    assert set(published(web)) == {docker_confs.dashboard.http_port}
    url = urlsplit(docker_confs.dashboard.public_url)
    assert (url.hostname, url.port) == ("dashboard-web", docker_confs.dashboard.http_port)


def test_node_http_port_agrees_with_compose_and_the_image_healthcheck(
    docker_confs: Confs, services: dict[str, Any]
) -> None:
    port = docker_confs.edge_node.http_port
    for name in NODE_SERVICES:
        assert set(published(services[name])) == {port}
        assert published(services[name])[port]["host_ip"] == "127.0.0.1", "node HTTP stays on the host's loopback"
    dockerfile = (ROOT / "docker" / "edge_node.Dockerfile").read_text()
    assert f"http://127.0.0.1:{port}/" in dockerfile and f"EXPOSE {port}" in dockerfile


def test_dashboard_image_healthcheck_probes_the_confs_port(docker_confs: Confs) -> None:
    dockerfile = (ROOT / "docker" / "dashboard.Dockerfile").read_text()
    assert f"http://127.0.0.1:{docker_confs.dashboard.http_port}/login" in dockerfile
    assert f"--bind\", \"0.0.0.0:{docker_confs.dashboard.http_port}\"" in dockerfile


def test_services_depend_on_a_healthy_broker(services: dict[str, Any]) -> None:
    for name in CLIENT_SERVICES:
        assert services[name]["depends_on"]["broker"]["condition"] == "service_healthy", name
