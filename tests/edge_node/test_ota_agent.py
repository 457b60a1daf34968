"""OtaAgent in-process: real HTTP downloads (Range, faults), real packages, real OpenVINO, live inference."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import openvino as ov
import pytest

from contracts.messages import TERMINAL_UPDATE_STATES, UpdateMessage
from edge_node.inference import ModelHolder
from edge_node.inference.openvino_runtime import OpenVinoClassifier
from edge_node.model_store import InstalledModel, ModelStore
from edge_node.ota import OtaAgent, PackageDownloader
from edge_node.ota.download import UNREACHABLE
from support.tiny_package import class_image
from tests.edge_node.ota_support import (
    Fault,
    OtaPackages,
    PackageServer,
    build_ota_packages,
    hostile_archive,
    rollback_command,
    update_command,
)

HAPPY = ["DOWNLOADING", "DOWNLOADED", "VERIFIED", "INSTALLING", "SELF_TEST", "ACTIVE"]
TOKEN = "node-token"


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> OtaPackages:
    return build_ota_packages(tmp_path_factory.mktemp("agent-packages"))


@pytest.fixture(scope="module")
def core() -> ov.Core:
    return ov.Core()


@pytest.fixture
def server() -> Iterator[PackageServer]:
    server = PackageServer(token=TOKEN).start()
    yield server
    server.stop()


@dataclass
class Rig:
    """An agent on a fresh store, with everything it reported."""

    agent: OtaAgent
    store: ModelStore
    holder: ModelHolder
    work_dir: Path
    updates: list[UpdateMessage] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)

    def states(self, command_id: str) -> list[str]:
        return [u.state.value for u in self.updates if u.command_id == command_id and u.progress in (None, 0.0, 1.0)]

    def final(self, command_id: str, timeout: float = 30.0) -> UpdateMessage:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [u for u in self.updates if u.command_id == command_id and u.state in TERMINAL_UPDATE_STATES]
            if done:
                assert self.agent.wait_idle(timeout)
                return done[-1]
            time.sleep(0.01)
        raise AssertionError(f"no terminal update for {command_id}: {self.updates}")

    def assert_clean(self) -> None:
        """Only active (+ previous) slots, no half unpack, no download leftovers."""
        assert len(list((self.store.root / "slots").iterdir())) <= 2
        assert list((self.store.root / "incoming").iterdir()) == []
        assert list((self.work_dir / "downloads").iterdir()) == []

    def serves(self, version: str) -> None:
        classifier = self.holder.current()
        assert classifier is not None and classifier.model_version == version
        assert classifier.classify(class_image("Pre", seed=3)).label == "Pre"
        assert self.store.active().version == version


@pytest.fixture
def rig_factory(tmp_path, packages, core, server):
    agents: list[OtaAgent] = []

    def make(initial: Path | None = None, *, root: Path | None = None, timeout_s: float = 5.0, **kwargs) -> Rig:
        root = root or tmp_path / "node"
        store = ModelStore(root / "models", packages.trusted)
        holder = ModelHolder()
        rig_box: list[Rig] = []
        downloader = PackageDownloader(
            root / "ota" / "downloads", TOKEN, timeout_s=timeout_s, backoff_s=0.05, origin=server.origin
        )
        agent = OtaAgent(
            store,
            holder,
            lambda model: OpenVinoClassifier(model.path, model.manifest, core=core),
            lambda message: rig_box[0].updates.append(message),
            "devA",
            root / "ota",
            TOKEN,
            kwargs.pop("max_package_bytes", 50_000_000),
            publish_warning=lambda code, text: rig_box[0].warnings.append((code, text)),
            downloader=downloader,
        )
        rig_box.append(Rig(agent, store, holder, root / "ota"))
        agents.append(agent)
        agent.startup(initial if initial is not None else packages.v1)
        return rig_box[0]

    yield make
    for agent in agents:
        agent.stop()


@pytest.fixture
def rig(rig_factory) -> Rig:
    return rig_factory()


def serve(server: PackageServer, package: Path, *faults: Fault) -> tuple[str, bytes]:
    data = package.read_bytes()
    return server.add(package.name, data, *faults), data


@pytest.mark.timeout(60)
def test_update_switches_models_while_inference_keeps_running(rig, server, packages):
    url, data = serve(server, packages.v2)
    seen: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def infer() -> None:
        while not stop.is_set():
            try:
                seen.append(rig.holder.current().classify(class_image("Early", seed=len(seen) % 7)).model_version)
            except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
                errors.append(exc)

    worker = threading.Thread(target=infer)
    worker.start()
    try:
        rig.serves("1.0.0")
        rig.agent.handle(update_command("c-happy", "1.1.0", url, data))
        final = rig.final("c-happy")
        after_active = len(seen)
        deadline = time.monotonic() + 10
        while len(seen) < after_active + 20 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        worker.join()
    assert final.state.value == "ACTIVE" and final.version == "1.1.0"
    assert rig.states("c-happy") == HAPPY
    assert errors == []
    assert "1.0.0" in seen and seen[-1] == "1.1.0"
    assert seen[after_active + 1 :] and set(seen[after_active + 1 :]) == {"1.1.0"}
    first_new = seen.index("1.1.0")
    assert set(seen[first_new:]) == {"1.1.0"}, "the model switched once, never back"
    rig.serves("1.1.0")
    assert rig.store.previous().version == "1.0.0"
    assert server.body_bytes(packages.v2.name) == len(data)
    assert all(r.authorized for r in server.requests)
    rig.assert_clean()


@pytest.mark.parametrize(
    "case, reason",
    [
        ("bad_signature", "signature"),
        ("wrong_sha256", "sha256"),
        ("truncated_file", "announces"),
        ("connection_always_drops", "connection closed"),
        ("broken_selftest", "self-test failed"),
        ("downgrade", "not newer"),
        ("same_version", "not newer"),
        ("too_large", "exceeds the limit"),
        ("extra_bytes", "more than"),
        ("version_mismatch", "the command said 1.9.0"),
        ("bad_content_range", "range"),
        ("not_found", UNREACHABLE),
    ],
)
@pytest.mark.timeout(60)
def test_every_fault_fails_with_a_reason_and_the_old_model_keeps_serving(rig, server, packages, case, reason):
    version, package, faults, sha, size = "1.1.0", packages.v2, [], None, None
    if case == "bad_signature":
        version, package = "1.6.0", packages.foreign_signature
    elif case == "wrong_sha256":
        sha = "0" * 64
    elif case == "truncated_file":
        data = packages.v2.read_bytes()
        url = server.add("truncated.tar.gz", data[: len(data) // 2])
    elif case == "connection_always_drops":
        faults = [Fault(drop_at=len(packages.v2.read_bytes()) // 2, times=None)]
    elif case == "broken_selftest":
        version, package = "1.5.0", packages.broken_selftest
    elif case == "downgrade":
        rig.agent.handle(update_command("c-up", "1.2.0", *serve(server, packages.v3)))
        assert rig.final("c-up").state.value == "ACTIVE"
    elif case == "same_version":
        version, package = "1.0.0", packages.v1
    elif case == "too_large":
        size = 60_000_000
    elif case == "extra_bytes":
        faults = [Fault(extra_bytes=10, times=None)]
    elif case == "version_mismatch":
        version = "1.9.0"
    elif case == "bad_content_range":
        faults = [Fault(drop_at=1000), Fault(bad_content_range=True, times=None)]
    served = rig.holder.model_version
    if case == "truncated_file":
        command = update_command("c-fault", version, url, data)
    else:
        url, body = serve(server, package, *faults)
        if case == "not_found":
            url = url + "-missing"
        command = update_command("c-fault", version, url, body, sha256=sha, size=size)
    rig.agent.handle(command)
    final = rig.final("c-fault")
    assert final.state.value == "FAILED", rig.updates
    assert reason in final.reason
    assert rig.states("c-fault")[-1] == "FAILED" and "ACTIVE" not in rig.states("c-fault")
    rig.serves(served)
    rig.assert_clean()


@pytest.mark.timeout(60)
def test_an_interrupted_download_resumes_with_range_and_fetches_each_byte_once(rig, server, packages):
    data = packages.v2.read_bytes()
    cut = len(data) // 3
    url = server.add("flaky.tar.gz", data, Fault(drop_at=cut, times=1))
    rig.agent.handle(update_command("c-resume", "1.1.0", url, data))
    assert rig.final("c-resume").state.value == "ACTIVE", rig.updates
    requests = server.requests_for("flaky.tar.gz")
    assert [r.range for r in requests] == [None, f"bytes={cut}-"]
    assert [r.status for r in requests] == [200, 206]
    assert server.body_bytes("flaky.tar.gz") == len(data)
    assert rig.agent.last_download.resumed_from == [cut]
    rig.serves("1.1.0")
    rig.assert_clean()


@pytest.mark.timeout(60)
def test_a_stalled_download_times_out_and_resumes(rig_factory, server, packages):
    rig = rig_factory(timeout_s=0.5)
    data = packages.v2.read_bytes()
    stall = Fault(stall_at=len(data) // 2)
    url = server.add("stall.tar.gz", data, stall)
    rig.agent.handle(update_command("c-stall", "1.1.0", url, data))
    assert rig.final("c-stall").state.value == "ACTIVE", rig.updates
    stall.release.set()  # let the stalled server thread finish and record what it sent
    deadline = time.monotonic() + 5
    while len(server.requests_for("stall.tar.gz")) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(str(r.range) for r in server.requests_for("stall.tar.gz")) == ["None", f"bytes={len(data) // 2}-"]
    assert server.body_bytes("stall.tar.gz") == len(data)
    rig.serves("1.1.0")


@pytest.mark.timeout(60)
def test_a_server_that_ignores_range_is_downloaded_again_from_the_start(rig, server, packages):
    data = packages.v2.read_bytes()
    # The first request drops midway; the server then ignores Range and sends everything again.
    url = server.add("norange.tar.gz", data, Fault(drop_at=len(data) // 2), Fault(ignore_range=True, times=None))
    rig.agent.handle(update_command("c-norange", "1.1.0", url, data))
    assert rig.final("c-norange").state.value == "ACTIVE", rig.updates
    assert [r.status for r in server.requests_for("norange.tar.gz")] == [200, 200]
    rig.serves("1.1.0")


@pytest.mark.timeout(60)
def test_a_download_without_the_token_is_refused_by_the_server(rig_factory, server, packages, tmp_path):
    rig = rig_factory()
    rig.agent._downloader._token = None  # a node misconfigured without its token
    url, data = serve(server, packages.v2)
    rig.agent.handle(update_command("c-notoken", "1.1.0", url, data))
    final = rig.final("c-notoken")
    assert final.state.value == "FAILED" and UNREACHABLE in final.reason
    rig.serves("1.0.0")


@pytest.mark.parametrize("kind", ["traversal", "absolute", "symlink"])
@pytest.mark.timeout(60)
def test_hostile_package_archives_are_refused(rig, server, packages, tmp_path, kind):
    hostile = hostile_archive(tmp_path / f"{kind}.tar.gz", packages.v2, kind)
    url, data = serve(server, hostile)
    rig.agent.handle(update_command("c-hostile", "1.1.0", url, data))
    final = rig.final("c-hostile")
    assert final.state.value == "FAILED" and "package refused" in final.reason
    rig.serves("1.0.0")
    rig.assert_clean()
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.timeout(60)
def test_rollback_returns_to_the_previous_model_and_back(rig, server, packages):
    rig.agent.handle(update_command("c-up", "1.1.0", *serve(server, packages.v2)))
    assert rig.final("c-up").state.value == "ACTIVE"
    rig.agent.handle(rollback_command("c-back", "1.0.0"))
    final = rig.final("c-back")
    assert (final.state.value, final.version) == ("ROLLED_BACK", "1.0.0")
    assert rig.states("c-back") == ["SELF_TEST", "ROLLED_BACK"]
    rig.serves("1.0.0")
    rig.agent.handle(rollback_command("c-wrong", "1.0.0"))
    wrong = rig.final("c-wrong")
    assert wrong.state.value == "FAILED" and "not the requested 1.0.0" in wrong.reason
    rig.serves("1.0.0")


@pytest.mark.timeout(60)
def test_rollback_without_a_previous_model_fails_clearly(rig):
    rig.agent.handle(rollback_command("c-nothing"))
    final = rig.final("c-nothing")
    assert final.state.value == "FAILED" and "no previous model" in final.reason
    rig.serves("1.0.0")


@pytest.mark.timeout(60)
def test_a_repeated_command_id_is_answered_with_its_outcome_never_applied_twice(rig_factory, server, packages, tmp_path):
    rig = rig_factory()
    url, data = serve(server, packages.v2)
    command = update_command("c-once", "1.1.0", url, data)
    rig.agent.handle(command)
    rig.agent.handle(command)  # still queued or running: answered at most with the step it has reached
    assert rig.final("c-once").state.value == "ACTIVE"
    assert list(dict.fromkeys(rig.states("c-once"))) == HAPPY and rig.states("c-once").count("ACTIVE") == 1
    seen = len(rig.updates)
    rig.agent.handle(command)
    assert rig.agent.wait_idle(5)
    assert [(u.state.value, u.version) for u in rig.updates[seen:]] == [("ACTIVE", "1.1.0")]
    rig.agent.stop()
    again = rig_factory(root=tmp_path / "node")
    again.agent.handle(command)
    assert again.agent.wait_idle(5)
    assert [(u.state.value, u.version) for u in again.updates] == [("ACTIVE", "1.1.0")]
    assert server.body_bytes(packages.v2.name) == len(data)
    again.serves("1.1.0")


@pytest.mark.timeout(60)
def test_a_command_accepted_before_a_kill_is_carried_out_after_restart(rig_factory, server, packages, tmp_path):
    rig = rig_factory()
    rig.agent.stop()
    url, data = serve(server, packages.v2)
    from edge_node.ota import CommandJournal

    CommandJournal(rig.work_dir / "ota_journal.json").accept(update_command("c-queued", "1.1.0", url, data))
    again = rig_factory(root=tmp_path / "node")
    assert again.final("c-queued").state.value == "ACTIVE"
    again.serves("1.1.0")


def _install_unserved(store: ModelStore, package: Path) -> InstalledModel:
    """What a kill between install and the pointer switch leaves behind."""
    return store.install(package)


@pytest.mark.timeout(60)
def test_kill_before_the_switch_restarts_on_the_old_model_and_reports_failed(rig_factory, packages, tmp_path):
    rig = rig_factory()
    rig.agent.stop()
    journal = rig.agent._journal
    journal.begin("c-killed", "model_update", "1.1.0", "SELF_TEST")
    orphan = _install_unserved(rig.store, packages.v2)
    again = rig_factory(root=tmp_path / "node")
    final = again.final("c-killed")
    assert final.state.value == "FAILED" and "interrupted by a restart during SELF_TEST" in final.reason
    again.serves("1.0.0")
    assert not orphan.path.exists()


@pytest.mark.timeout(60)
def test_kill_after_the_switch_restarts_on_the_new_model_and_reports_active(rig_factory, packages, tmp_path):
    rig = rig_factory()
    rig.agent.stop()
    rig.agent._journal.begin("c-switched", "model_update", "1.1.0", "SELF_TEST")
    rig.store.activate(rig.store.install(packages.v2))
    again = rig_factory(root=tmp_path / "node")
    final = again.final("c-switched")
    assert (final.state.value, final.version) == ("ACTIVE", "1.1.0")
    again.serves("1.1.0")


@pytest.mark.timeout(60)
def test_start_falls_back_to_previous_when_the_active_fails_its_selftest(rig_factory, packages, tmp_path):
    rig = rig_factory()
    rig.agent.stop()
    broken = rig.store.install(packages.broken_selftest)
    rig.store.activate(broken)  # as if the disk changed under a model that once passed
    again = rig_factory(root=tmp_path / "node")
    again.serves("1.0.0")
    assert again.store.previous() is None and not broken.path.exists()
    assert any(code == "SELF_TEST_FAILED" for code, _ in again.warnings)


@pytest.mark.timeout(60)
def test_an_empty_store_installs_the_initial_package(rig_factory, packages):
    rig = rig_factory(packages.v2)
    rig.serves("1.1.0")
    assert rig.store.previous() is None


@pytest.mark.timeout(60)
def test_a_broken_initial_package_leaves_nothing_serving_but_accepts_an_update(rig_factory, server, packages):
    rig = rig_factory(packages.broken_selftest)
    assert rig.holder.current() is None
    rig.agent.handle(update_command("c-rescue", "1.0.0", *serve(server, packages.v1)))
    assert rig.final("c-rescue").state.value == "ACTIVE"
    rig.serves("1.0.0")
