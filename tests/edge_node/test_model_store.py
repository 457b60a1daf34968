"""ModelStore: verified slots, an atomic active/previous pointer, crash recovery, rollback, disk hygiene."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from contracts.model_package import PackageError
from edge_node.model_store import ModelStore, ModelStoreError
from tests.edge_node.ota_support import OtaPackages, build_ota_packages, hostile_archive


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> OtaPackages:
    return build_ota_packages(tmp_path_factory.mktemp("store-packages"))


@pytest.fixture
def store(tmp_path: Path, packages: OtaPackages) -> ModelStore:
    return ModelStore(tmp_path / "models", packages.trusted)


def slot_names(store: ModelStore) -> set[str]:
    return {p.name for p in (store.root / "slots").iterdir()}


def test_empty_store_has_no_active_or_previous(store):
    assert store.active() is None
    assert store.previous() is None


def test_installed_slot_does_not_serve_until_activated(store, packages):
    installed = store.install(packages.v1)
    assert installed.version == "1.0.0"
    assert (installed.path / "model.xml").is_file()
    assert store.active() is None
    store.activate(installed)
    assert store.active().slot == installed.slot
    pointer = json.loads((store.root / "state.json").read_text())
    assert pointer["active"] == installed.slot and pointer["previous"] is None


def test_activate_keeps_previous_and_removes_older_slots(store, packages):
    first, second, third = (store.install(p) for p in (packages.v1, packages.v2, packages.v3))
    store.activate(first)
    store.activate(second)
    assert (store.active().version, store.previous().version) == ("1.1.0", "1.0.0")
    store.activate(third)
    assert (store.active().version, store.previous().version) == ("1.2.0", "1.1.0")
    assert slot_names(store) == {second.slot, third.slot}
    assert not first.path.exists()


def test_rollback_swaps_active_and_previous(store, packages):
    store.activate(store.install(packages.v1))
    store.activate(store.install(packages.v2))
    back = store.rollback()
    assert back.version == "1.0.0"
    assert (store.active().version, store.previous().version) == ("1.0.0", "1.1.0")


def test_rollback_discarding_current_deletes_it(store, packages):
    store.activate(store.install(packages.v1))
    bad = store.install(packages.v2)
    store.activate(bad)
    store.rollback(discard_current=True)
    assert store.active().version == "1.0.0" and store.previous() is None
    assert not bad.path.exists()


def test_rollback_without_previous_is_a_clear_error(store, packages):
    with pytest.raises(ModelStoreError, match="no previous model"):
        store.rollback()
    store.activate(store.install(packages.v1))
    with pytest.raises(ModelStoreError, match="no previous model"):
        store.rollback()
    assert store.active().version == "1.0.0"


def test_recover_drops_half_unpacked_and_never_activated_slots(store, packages):
    active = store.install(packages.v1)
    store.activate(active)
    orphan = store.install(packages.v2)  # killed after install, before the self-test switched to it
    half = store.root / "incoming" / "deadbeef"
    (half / "model.bin").parent.mkdir(parents=True)
    (half / "model.bin").write_bytes(b"half written")
    torn_pointer = store.root / ".state.json.1234abcd.tmp"
    torn_pointer.write_text('{"active": "garbage')
    ModelStore(store.root, packages.trusted).recover()
    assert store.active().slot == active.slot
    assert slot_names(store) == {active.slot}
    assert not orphan.path.exists() and not half.exists() and not torn_pointer.exists()


def test_recover_promotes_previous_when_the_active_slot_is_gone(store, packages):
    first, second = store.install(packages.v1), store.install(packages.v2)
    store.activate(first)
    store.activate(second)
    shutil.rmtree(second.path)
    store.recover()
    assert store.active().slot == first.slot and store.previous() is None


def test_recover_rebuilds_a_corrupt_pointer_from_the_newest_valid_slot(store, packages):
    store.activate(store.install(packages.v1))
    store.activate(store.install(packages.v2))
    (store.root / "state.json").write_text("not json {")
    with pytest.raises(ModelStoreError, match="unreadable"):
        store.active()
    store.recover()
    assert store.active().version == "1.1.0"


def test_pointer_naming_a_path_outside_the_store_is_refused(store, packages):
    (store.root / "state.json").write_text(json.dumps({"active": "../../etc", "previous": None}))
    with pytest.raises(ModelStoreError, match="bad active slot"):
        store.active()


def test_check_detects_a_slot_file_changed_on_disk(store, packages):
    installed = store.install(packages.v1)
    store.check(installed)
    with open(installed.path / "model.bin", "r+b") as handle:
        handle.write(b"\xff\xff")
    with pytest.raises(ModelStoreError, match="model.bin"):
        store.check(installed)


def test_package_signed_by_an_untrusted_key_is_not_installed(store, packages):
    with pytest.raises(PackageError, match="signature"):
        store.install(packages.foreign_signature)
    assert slot_names(store) == set()
    assert list((store.root / "incoming").iterdir()) == []


@pytest.mark.parametrize("kind", ["traversal", "absolute", "symlink"])
def test_hostile_archives_are_refused_and_leave_nothing(store, packages, tmp_path, kind):
    hostile = hostile_archive(tmp_path / f"{kind}.tar.gz", packages.v1, kind)
    with pytest.raises(PackageError):
        store.install(hostile)
    assert slot_names(store) == set()
    assert list((store.root / "incoming").iterdir()) == []
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()


def test_activate_refuses_a_directory_outside_the_store(store, packages, tmp_path):
    installed = store.install(packages.v1)
    stray = tmp_path / "elsewhere" / installed.slot
    shutil.copytree(installed.path, stray)
    with pytest.raises(ModelStoreError, match="not an installed slot"):
        store.activate(type(installed)(stray, installed.manifest))
    assert store.active() is None
