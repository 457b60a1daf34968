"""One quick run through train, export, package and evaluate on synthetic data."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from contracts.model_package import (
    PackageError,
    generate_private_key,
    parse_public_key,
    read_manifest,
    unpack_package,
)
from trainer.__main__ import main


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory, synthetic_data: Path, confs_writer) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """Trust a fresh key, train 3 tiny epochs, and package the run."""
    work = tmp_path_factory.mktemp("pipeline")
    confs = confs_writer(work / "confs.json", synthetic_data, work, epochs=3, train_crop=48)
    assert main(["--confs", str(confs), "keys", "--trust"]) == 0
    assert main(["--confs", str(confs), "train", "--quiet"]) == 0
    run = work / "runs" / "latest"
    assert main(["--confs", str(confs), "package", "--run", str(run), "--version", "0.1.0"]) == 0
    return {"work": work, "confs": confs, "run": run.resolve(), "package": work / "models" / "all-small-cnn-0.1.0.tar.gz"}


def _trusted(confs: Path) -> list:  # type: ignore[type-arg]
    return [parse_public_key(k) for k in json.loads(confs.read_text())["ota"]["trusted_public_keys"]]


def test_training_run_keeps_config_history_and_report(released: dict) -> None:  # type: ignore[type-arg]
    run = released["run"]
    config = json.loads((run / "config.json").read_text())
    assert config["trainer"]["epochs"] == 3 and config["classes"] == ["Alpha", "Beta", "Gamma"]
    history = json.loads((run / "history.json").read_text())
    assert 1 <= len(history["history"]["loss"]) <= 3 and "val_loss" in history["history"]
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    assert {"test", "colour_baseline", "robustness"} <= set(metrics)
    assert {"clean", "grayscale", "jpeg q50", "hue +15"} <= set(metrics["robustness"])
    assert (run / "report" / "report.md").is_file() and (run / "report" / "confusion_cnn.png").is_file()


def test_every_format_agrees_with_keras(released: dict) -> None:  # type: ignore[type-arg]
    export = json.loads((released["run"] / "export.json").read_text())
    assert set(export["formats_vs_keras"]) == {"openvino", "onnxruntime", "litert"}
    for check in export["formats_vs_keras"].values():
        assert check["labels_agree"] is True and check["max_abs_diff"] < 1e-2 and check["n_images"] > 0


def test_package_is_signed_and_tampering_is_refused(released: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    manifest = read_manifest(released["package"], _trusted(released["confs"]))
    assert manifest.classes == ["Alpha", "Beta", "Gamma"] and manifest.input.dtype == "uint8"
    assert manifest.input.shape == [1, 64, 64, 3] and manifest.format == 2
    assert {"model.xml", "model.bin", "model.onnx", "model.tflite", "selftest.npz"} == set(manifest.files)
    with pytest.raises(PackageError):
        read_manifest(released["package"], [generate_private_key().public_key()])
    tampered = tmp_path / "tampered.tar.gz"
    with tarfile.open(released["package"]) as src, tarfile.open(tampered, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "model.bin":
                data = data[:-4] + b"\0\0\0\1"
            member.size = len(data)
            import io

            dst.addfile(member, io.BytesIO(data))
    with pytest.raises(PackageError):
        read_manifest(tampered, _trusted(released["confs"]))


def test_every_runtime_reproduces_the_selftest_at_every_precision(released: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    from contracts.selftest import run_selftest
    from trainer.package import runners_for
    from trainer.runtimes import cpu_precisions

    manifest = unpack_package(released["package"], tmp_path / "pkg", _trusted(released["confs"]))
    with np.load(tmp_path / "pkg" / "selftest.npz") as data:
        assert data["inputs"].dtype == np.uint8 and data["inputs"].shape[1:] == (64, 64, 3)
        assert data["outputs"].shape == (len(data["inputs"]), 3) and data["ood_scores"].shape == (len(data["inputs"]),)
    tolerances = manifest.selftest.tolerances
    assert tolerances["f32"] < tolerances["bf16"] and manifest.selftest.min_margin is not None
    runners = runners_for(tmp_path / "pkg")
    assert {("openvino", p) for p in cpu_precisions()} | {("onnxruntime", "f32"), ("litert", "f32")} == set(runners)
    for (runtime, precision), run in runners.items():
        result = run_selftest(run, tmp_path / "pkg", manifest, precision)
        assert result.max_abs_diff <= manifest.selftest.tolerance(precision), (runtime, precision)


def test_ood_detector_travels_in_the_signed_package(released: dict, synthetic_data: Path, tmp_path: Path) -> None:  # type: ignore[type-arg]
    import keras

    import trainer.layers  # noqa: F401
    from trainer.data import scan_dataset
    from trainer.ood import MahalanobisFit, feature_model, predict_features
    from trainer.package import runners_for
    from trainer.stain_gate import combined_scores, stain_ratios

    manifest = unpack_package(released["package"], tmp_path / "pkg", _trusted(released["confs"]))
    fit = MahalanobisFit.load(released["run"] / "ood.npz")
    assert manifest.ood is not None and manifest.ood.threshold == pytest.approx(fit.threshold)
    images = scan_dataset(synthetic_data, image_size=64).images[:6]
    _probs, features = predict_features(feature_model(keras.models.load_model(released["run"] / "model.keras")), images)
    assert fit.stain_limits is not None and manifest.ood.method == "mahalanobis+stain"
    expected = combined_scores(fit.scores(features), stain_ratios(images, fit.stain_limits), fit.threshold)
    for (runtime, precision), run in runners_for(tmp_path / "pkg").items():
        if precision == "f32":
            scores = run(images).ood_scores
            assert scores is not None
            np.testing.assert_allclose(scores, expected, rtol=0.02, atol=0.01 * fit.threshold, err_msg=runtime)


def test_evaluate_json_reports_the_documented_keys(released: dict, synthetic_data: Path, capsys) -> None:  # type: ignore[no-untyped-def,type-arg]
    capsys.readouterr()
    args = ["--confs", str(released["confs"]), "evaluate", "--package", str(released["package"]), "--data", str(synthetic_data), "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"accuracy", "macro_recall", "per_class", "confusion_matrix", "labels", "n_images", "ms_per_image"} <= set(result)
    assert result["n_images"] == 90 and result["labels"] == ["Alpha", "Beta", "Gamma"]
    assert set(result["per_class"]["Beta"]) == {"precision", "recall", "f1", "support"}
    assert np.array(result["confusion_matrix"]).sum() == 90
    assert main([*args[:-1], "--split", "test"]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_models_page_shows_the_metrics_this_trainer_wrote(released: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    from contracts.confs import Confs
    from contracts.release_metrics import ReleaseMetrics
    from dashboard import create_app
    from dashboard.migrations import upgrade_database
    from dashboard.services import users
    from dashboard.services.releases import register_package
    from support.web_seed import sign_in

    raw = json.loads(released["confs"].read_text())
    raw["dashboard"].update(database_url=f"sqlite:///{tmp_path / 'd.db'}", secret_key_file=str(tmp_path / "key"),
                            package_dir=str(tmp_path / "packages"))
    app = create_app(Confs.model_validate(raw), TESTING=True)
    db = app.extensions["db"]
    upgrade_database(db.engine)
    metrics = ReleaseMetrics.from_manifest(read_manifest(released["package"], _trusted(released["confs"])).metrics)
    assert metrics.test_accuracy is not None and metrics.matrix_for(["Alpha", "Beta", "Gamma"]) is not None
    assert set(metrics.per_class_recall) == {"Alpha", "Beta", "Gamma"} and metrics.ood is not None
    with db.session() as session:
        user, password = users.create_user(session, "alice", "admin")
        release_id = register_package(session, released["package"], tmp_path / "store", raw["ota"]["trusted_public_keys"],
                                      1 << 30, "alice").id
    client = sign_in(app.test_client(), "alice", password)
    assert f"{metrics.test_accuracy * 100:.1f}%" in client.get("/models").get_data(as_text=True)
    page = client.get(f"/models/{release_id}").get_data(as_text=True)
    assert 'class="matrix"' in page and "<th>Gamma</th>" in page and "In-distribution held-out images flagged" in page
    db.dispose()
