"""A non-editable install (what the images do) carries every tracked non-Python file of the packages."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy.compose_support import ROOT

PACKAGES = ("contracts", "dashboard", "edge_node", "broker_config", "trainer")


def _tracked_data_files() -> set[str]:
    """Tracked files under the packages that are not Python sources."""
    result = subprocess.run(["git", "ls-files", *PACKAGES], cwd=ROOT, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        pytest.skip("not a git checkout")
    return {name for name in result.stdout.split() if not name.endswith(".py")}


def _built_files(tmp_path: Path) -> set[str]:
    """Files setuptools puts in the build tree (and so in the wheel) from a clean copy of the sources."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "generated"))
    lib = tmp_path / "lib"
    result = subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "build_py", "--build-lib", str(lib)],
        cwd=src, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return {str(path.relative_to(lib)) for path in lib.rglob("*") if path.is_file()}


def test_templates_static_and_other_data_files_are_installed(tmp_path: Path) -> None:
    built = _built_files(tmp_path)
    assert "dashboard/templates/login.html" in built and "dashboard/static/css/app.css" in built
    assert "broker_config/mosquitto.conf.template" in built
    missing = _tracked_data_files() - built
    assert not missing, f"left out of a non-editable install: {sorted(missing)}"
