"""Bad inputs give one clear error line and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _assert_clean_failure(result, *needles: str) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert "error:" in result.stderr
    for needle in needles:
        assert needle in result.stderr


@pytest.fixture()
def confs(tmp_path: Path, synthetic_data: Path, confs_writer) -> Path:  # type: ignore[no-untyped-def]
    return confs_writer(tmp_path / "confs.json", synthetic_data, tmp_path)


def test_missing_data_dir(cli, confs: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _assert_clean_failure(cli("--confs", str(confs), "index", "--data", str(tmp_path / "nowhere")), "not found")


def test_empty_folder(cli, confs: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "empty").mkdir()
    _assert_clean_failure(cli("--confs", str(confs), "index", "--data", str(tmp_path / "empty")), "no class folders")


def test_single_class(cli, confs: Path, tmp_path: Path, dataset_maker) -> None:  # type: ignore[no-untyped-def]
    data = dataset_maker(tmp_path / "one", classes=("Only",), per_class=6)
    _assert_clean_failure(cli("--confs", str(confs), "train", "--data", str(data)), "at least 2 classes")


def test_bad_package_path(cli, confs: Path, tmp_path: Path, synthetic_data: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("--confs", str(confs), "keys", "--trust").returncode == 0
    result = cli("--confs", str(confs), "evaluate", "--package", str(tmp_path / "none.tar.gz"), "--data", str(synthetic_data))
    _assert_clean_failure(result, "package not found")
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not an archive")
    _assert_clean_failure(cli("--confs", str(confs), "evaluate", "--package", str(junk), "--data", str(synthetic_data)), "refused")


def test_evaluate_without_trusted_keys(cli, confs: Path, tmp_path: Path, synthetic_data: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("--confs", str(confs), "evaluate", "--package", str(tmp_path / "x.tar.gz"), "--data", str(synthetic_data))
    _assert_clean_failure(result, "keys --trust")


def test_bad_confs_file(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "confs.json"
    bad.write_text('{"trainer": {"epochs": "many"}}')
    _assert_clean_failure(cli("--confs", str(bad), "index"))


def test_non_image_and_truncated_jpeg_are_skipped_not_fatal(cli, confs: Path, tmp_path: Path, dataset_maker) -> None:  # type: ignore[no-untyped-def]
    data = dataset_maker(tmp_path / "data", per_class=12)
    (data / "Alpha" / "readme.txt").write_text("hello")
    whole = (data / "Beta" / "IMG-Beta-004.jpg").read_bytes()
    (data / "Beta" / "IMG-Beta-050.jpg").write_bytes(whole[: len(whole) // 3])
    result = cli("--confs", str(confs), "index", "--data", str(data), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    reasons = {Path(s["path"]).name: s["reason"] for s in summary["skipped"]}
    assert reasons["readme.txt"].startswith("not an image") and reasons["IMG-Beta-050.jpg"].startswith("corrupt")
    assert summary["decoded"] == 36


def test_augment_writes_an_augmented_copy(cli, tmp_path: Path, dataset_maker) -> None:  # type: ignore[no-untyped-def]
    data = dataset_maker(tmp_path / "data", per_class=4)
    result = cli("augment", "--data", str(data), "--out", str(tmp_path / "aug"), "--copies", "2", "--mask-scale-bar")
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "aug").rglob("*.png"))) == 24


def test_augment_takes_its_augmentations_from_the_confs(cli, tmp_path: Path, dataset_maker, confs: Path) -> None:  # type: ignore[no-untyped-def]
    data = dataset_maker(tmp_path / "data", per_class=2)
    raw = json.loads(confs.read_text())
    raw.setdefault("trainer", {})["zoom_augment"] = {"p_zoom": 2.0}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw))
    result = cli("--confs", str(bad), "augment", "--data", str(data), "--out", str(tmp_path / "aug"))
    _assert_clean_failure(result, "zoom_augment")
    assert not (tmp_path / "aug").exists()
