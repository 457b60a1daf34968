"""scripts/test_deploy without an engine: its override trusts the run's key everywhere, and the saved host state parses."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from deploy.compose_support import COMPOSE_FILE, ROOT

from contracts.model_package import public_key_text
from scripts.test_deploy import engine
from scripts.test_deploy.stack import PORT_VARIABLES, Stack


def test_override_mounts_confs_trusting_the_run_key_for_every_python_service(tmp_path: Path) -> None:
    stack = Stack(ROOT, tmp_path, {})
    stack.write_override()
    override = json.loads(stack.override.read_text())["services"]
    python_services = {name for name, s in yaml.safe_load(COMPOSE_FILE.read_text())["services"].items()
                       if name not in ("broker", "trainer")}
    assert set(override) == python_services
    for name, service in override.items():
        (mount,) = service["volumes"]
        assert mount["target"] == "/app/confs.json" and mount["read_only"]
        confs = json.loads(Path(mount["source"]).read_text())
        assert public_key_text(stack.key) in confs["ota"]["trusted_public_keys"]
        assert confs["edge_node"]["device_id"] == (name if name.startswith("edge-node") else "edge-node-1")
    assert set(stack.env) == set(PORT_VARIABLES) and len(set(stack.env.values())) == len(PORT_VARIABLES)
    assert all(f"${{{variable}:-" in COMPOSE_FILE.read_text() for variable in PORT_VARIABLES)


def test_host_state_records_the_forward_policy_from_iptables_save(monkeypatch) -> None:
    dump = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
    answers = {"sysctl": "1\n", "iptables-save": dump}

    def fake_run(args: list[str], **_: object):
        class Result:
            returncode = 1 if args[0] == "ip" else 0
            stdout = answers.get(args[0], "")
        return Result()

    monkeypatch.setattr(engine, "run", fake_run)
    saved = engine.HostNetwork.save()
    assert (saved.ip_forward, saved.forward_policy, saved.iptables, saved.had_bridge) == ("1", "DROP", dump, False)
