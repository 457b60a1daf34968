"""Chromium against the real demo (scripts/demo.py): it trusts its own development signing key, so a package signed
with that key is accepted on the Models page, while one signed with an unknown key is refused and audited."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from browser.stack import REPO, shot, wait_for
from PIL import Image
from support.tiny_package import CLASSES, class_image, make_tiny_package

from contracts.model_package import generate_private_key, load_private_key, public_key_text

pytestmark = pytest.mark.timeout(400)
LOGIN = re.compile(r"Dashboard: (http://localhost:\d+)/\s+login: admin / (\S+)")


@dataclass
class Demo:
    """The running demo: its address, admin password, output so far and development key file."""

    url: str
    password: str
    output: Path
    dev_key: Path
    confs: Path


@pytest.fixture(scope="module")
def demo(chromium_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """scripts/demo.py with its own confs: a released package from one key, no development key yet."""
    root = tmp_path_factory.mktemp("demo")
    release_key = generate_private_key()
    package = make_tiny_package(root / "pkg", release_key, "1.0.0")
    raw = json.loads((REPO / "confs.json").read_text())
    raw["ota"]["trusted_public_keys"] = [public_key_text(release_key)]
    raw["trainer"]["signing_key"] = str(root / "keys" / "model_signing_key.pem")
    confs = root / "confs.json"
    confs.write_text(json.dumps(raw))
    for label in CLASSES:
        (root / "images" / label).mkdir(parents=True)
        Image.fromarray(class_image(label, seed=0)).save(root / "images" / label / f"{label}.png")
    output = root / "demo.out"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "scripts/demo.py", "--confs", str(confs), "--package", str(package), "--data",
             str(root / "images"), "--state", str(root / "state"), "--interval", "2", "--duration", "300"],
            cwd=REPO, stdout=sink, stderr=subprocess.STDOUT,
        )
    try:
        found = wait_for(lambda: LOGIN.search(output.read_text()) or process.poll() is not None, 180,
                         "the demo's dashboard address and admin password", every=0.5)
        match = LOGIN.search(output.read_text())
        assert match, f"the demo stopped before serving:\n{output.read_text()[-3000:]} ({found})"
        yield Demo(match.group(1), match.group(2), output, Path(raw["trainer"]["signing_key"]), confs)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def sign_in(page, demo: Demo) -> None:  # noqa: ANN001
    """Sign in as the demo's admin."""
    page.goto(demo.url + "/login")
    page.fill("#username", "admin")
    page.fill("#password", demo.password)
    page.click("button[type=submit]")
    page.wait_for_url(demo.url + "/")


def upload(page, demo: Demo, package: Path) -> str:  # noqa: ANN001
    """Upload a package on the Models page; the flash message it gets."""
    page.goto(demo.url + "/models")
    page.set_input_files('input[name="package"]', str(package))
    page.click('button:text-is("Upload and verify")')
    page.wait_for_selector(".flash-list")
    return str(page.inner_text(".flash-list"))


def test_a_package_signed_with_the_demos_development_key_is_accepted(page, demo: Demo, tmp_path: Path) -> None:  # noqa: ANN001
    assert demo.dev_key.exists(), "the demo creates the trainer's development key as `python -m trainer keys` would"
    dev_key = load_private_key(demo.dev_key)
    assert public_key_text(dev_key) in demo.output.read_text()
    assert json.loads(demo.confs.read_text())["ota"]["trusted_public_keys"] != [public_key_text(dev_key)]
    package = make_tiny_package(tmp_path, dev_key, "1.1.0", seed=1)
    sign_in(page, demo)
    message = upload(page, demo, package)
    assert "Registered tiny-classifier 1.1.0" in message, message
    assert page.locator('a:text-is("Roll out this release")').count() == 1
    shot(page, "25-demo-dev-key-package-accepted")


def test_a_package_signed_with_an_unknown_key_is_refused_and_audited(page, demo: Demo, tmp_path: Path) -> None:  # noqa: ANN001
    package = make_tiny_package(tmp_path, generate_private_key(), "1.2.0", seed=2)
    sign_in(page, demo)
    message = upload(page, demo, package)
    assert "Upload refused" in message and "1.2.0" not in page.inner_text("table"), message
    shot(page, "26-demo-unknown-key-refused")
    page.goto(demo.url + "/audit?action=release.refused")
    row = page.locator("table tr", has_text="release.refused").first
    assert "tiny-classifier-1.2.0.tar.gz" in row.inner_text()
    shot(page, "27-demo-refusal-audited")
