"""The CLI: check-config names the bad key, classify prints per image and a summary, no TensorFlow."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support.tiny_package import class_image

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "edge_node", *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=90
    )


def confs_file(tmp_path: Path, public_key: str, **edge: object) -> Path:
    data = json.loads((ROOT / "confs.json").read_text())
    data["ota"]["trusted_public_keys"] = [public_key]
    data["edge_node"].update(model_store=str(tmp_path / "models"), initial_package=None)
    data["edge_node"].update(**edge)
    path = tmp_path / "confs.json"
    path.write_text(json.dumps(data))
    return path


def save_jpeg(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, "JPEG", quality=95)
    return path


@pytest.mark.parametrize(
    "change, key",
    [
        (lambda d: d["edge_node"].update(confidence_threshold=1.5), "edge_node.confidence_threshold"),
        (lambda d: d["mqtt"].update(port="eighty"), "mqtt.port"),
        (lambda d: d["edge_node"].update(unknown_key=1), "edge_node.unknown_key"),
        (lambda d: d["edge_node"]["openvino"].update(device="MYRIAD"), "2022.3"),
        (lambda d: (d["edge_node"].pop("openvino"), d["edge_node"].update(openvino_device="MYRIAD")), "2022.3"),
        (lambda d: d["edge_node"].update(openvino_device="GPU"), "openvino_device (deprecated)"),
        (lambda d: d["edge_node"].update(runtime="tensorflow"), "edge_node.runtime"),
        (lambda d: d["edge_node"].update(runtime="litert", inference_precision="bf16"), "edge_node.inference_precision"),
        (lambda d: d["edge_node"].update(initial_package="/nope/pkg.tar.gz"), "edge_node.initial_package"),
        (lambda d: d["ota"].update(trusted_public_keys=[]), "ota.trusted_public_keys"),
    ],
)
def test_check_config_names_the_bad_key(tmp_path, tiny_package, change, key):
    path = confs_file(tmp_path, tiny_package.public_key_text)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    result = run_cli("check-config", "--confs", str(path), env={"MQTT_PASSWORD": "x", "EDGE_TOKEN": "t"})
    assert result.returncode == 1
    assert key in result.stderr and "Traceback" not in result.stderr


def test_check_config_wants_the_secrets(tmp_path, tiny_package):
    path = confs_file(tmp_path, tiny_package.public_key_text)
    result = run_cli("check-config", "--confs", str(path), env={"MQTT_PASSWORD": "", "EDGE_TOKEN": ""})
    assert result.returncode == 1
    assert "mqtt.password_file" in result.stderr and "edge_node.token_file" in result.stderr
    good = run_cli("check-config", "--confs", str(path), env={"MQTT_PASSWORD": "x", "EDGE_TOKEN": "t"})
    assert good.returncode == 0, good.stderr
    assert "OK" in good.stdout


def test_check_config_on_unreadable_or_broken_json(tmp_path):
    missing = run_cli("check-config", "--confs", str(tmp_path / "absent.json"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    result = run_cli("check-config", "--confs", str(broken))
    assert result.returncode == 1 and "not valid JSON" in result.stderr and "Traceback" not in result.stderr


def test_run_refuses_to_start_without_a_password(tmp_path, tiny_package):
    path = confs_file(tmp_path, tiny_package.public_key_text)
    result = run_cli("run", "--confs", str(path), env={"MQTT_PASSWORD": "", "EDGE_TOKEN": "t"})
    assert result.returncode == 1 and "mqtt.password_file" in result.stderr and "Traceback" not in result.stderr


def test_classify_prints_each_image_and_a_summary_without_tensorflow(tmp_path, tiny_package):
    path = confs_file(tmp_path, tiny_package.public_key_text)
    data = tmp_path / "data"
    save_jpeg(data / "WBC-Malignant-Pre-741.jpg", class_image("Pre", seed=1))
    save_jpeg(data / "WBC-Benign-001.jpg", class_image("Benign", seed=2))
    save_jpeg(data / "Early" / "cell-17.jpg", class_image("Early", seed=3))
    save_jpeg(data / "WBC-Malignant-Pro-9.jpg", class_image("Early", seed=4))  # the model will be wrong here
    save_jpeg(data / "unknown.jpg", class_image("Pro", seed=5))
    probe = (
        "import sys, runpy; sys.argv = ['edge_node', 'classify', '--confs', %r, '--package', %r, %r];"
        "code = 0\n"
        "try:\n    runpy.run_module('edge_node', run_name='__main__')\n"
        "except SystemExit as exc:\n    code = exc.code\n"
        "tf = sorted(m for m in sys.modules if m == 'tensorflow' or m.startswith(('tensorflow.', 'keras')))\n"
        "print('TF_MODULES', tf); sys.exit(code)"
    ) % (str(path), str(tiny_package.archive), str(data))
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "TF_MODULES []" in out
    blocks = {line.strip().rsplit("/", 1)[-1]: i for i, line in enumerate(out.splitlines()) if line.endswith(".jpg")}
    lines = out.splitlines()
    pre = lines[blocks["WBC-Malignant-Pre-741.jpg"] + 2]
    assert "label Pre" in pre and "truth Pre" in pre and "RIGHT" in pre and " ms" in pre
    assert "Benign 0." in lines[blocks["WBC-Malignant-Pre-741.jpg"] + 1]
    assert "truth Early  RIGHT" in lines[blocks["cell-17.jpg"] + 2]
    assert "truth Pro  WRONG" in lines[blocks["WBC-Malignant-Pro-9.jpg"] + 2]
    assert "truth" not in lines[blocks["unknown.jpg"] + 2]
    summary = lines[-2]
    assert summary.startswith("summary: 5 classified, 0 refused, accuracy 75.00% (3/4)") and "total time" in summary


def test_classify_refuses_bad_files_and_exits_non_zero(tmp_path, tiny_package):
    path = confs_file(tmp_path, tiny_package.public_key_text)
    good = save_jpeg(tmp_path / "Benign" / "a.jpg", class_image("Benign"))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"GIF89a nonsense")
    result = run_cli("classify", "--confs", str(path), "--package", str(tiny_package.archive), str(good), str(bad))
    assert result.returncode == 1
    assert "bad.jpg: refused: not an image" in result.stderr and "Traceback" not in result.stderr
    assert "summary: 1 classified, 1 refused" in result.stdout


def test_classify_refuses_an_unsigned_package(tmp_path, tiny_package):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from contracts.model_package import public_key_text

    path = confs_file(tmp_path, public_key_text(Ed25519PrivateKey.generate()))
    image = save_jpeg(tmp_path / "a.jpg", class_image("Pre"))
    result = run_cli("classify", "--confs", str(path), "--package", str(tiny_package.archive), str(image))
    assert result.returncode == 1 and "signature" in result.stderr and "Traceback" not in result.stderr


def test_classify_without_a_model_says_so(tmp_path, tiny_package):
    path = confs_file(tmp_path, tiny_package.public_key_text)
    image = save_jpeg(tmp_path / "a.jpg", class_image("Pre"))
    result = run_cli("classify", "--confs", str(path), str(image))
    assert result.returncode == 1 and "no model" in result.stderr
    bad_threshold = run_cli("classify", "--confs", str(path), "--threshold", "3", str(image))
    assert bad_threshold.returncode == 1 and "--threshold" in bad_threshold.stderr


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_classify_json_prints_one_object_per_image_and_a_summary(tmp_path, tiny_package_v2, runtime):
    path = confs_file(tmp_path, tiny_package_v2.public_key_text)
    data = tmp_path / "data"
    save_jpeg(data / "Pre" / "a.jpg", class_image("Pre", seed=1))
    save_jpeg(data / "b.jpg", class_image("Benign", seed=2))
    Image.fromarray(np.full((80, 80, 3), (0, 0, 100), dtype=np.uint8)).save(data / "far.png")
    result = run_cli("classify", "--confs", str(path), "--package", str(tiny_package_v2.archive), "--json",
                     "--runtime", runtime, "--precision", "f32", str(data))
    assert result.returncode == 0, result.stderr
    *images, summary = json_lines(result.stdout)
    by_name = {Path(o["file"]).name: o for o in images}
    assert set(by_name) == {"a.jpg", "b.jpg", "far.png"}
    for item in images:
        assert set(item) >= {"file", "label", "confidence", "probabilities", "uncertain", "out_of_distribution", "ood_score"}
    assert by_name["a.jpg"]["label"] == "Pre" and by_name["a.jpg"]["out_of_distribution"] is False
    assert by_name["far.png"]["out_of_distribution"] is True and by_name["far.png"]["ood_score"] > 0.1
    assert by_name["far.png"]["verdict"] == "needs review: outside what this model was trained on"
    assert summary["summary"] is True and summary["classified"] == 3 and summary["errors"] == 0
    assert summary["labels"] == {"Benign": 1, "Pre": 1} and summary["out_of_distribution"] == 1
    assert summary["runtime"] == runtime and summary["precision"] == "f32"


def test_classify_human_output_says_needs_review_instead_of_a_label(tmp_path, tiny_package_v2):
    path = confs_file(tmp_path, tiny_package_v2.public_key_text)
    far = tmp_path / "far.png"
    Image.fromarray(np.full((80, 80, 3), (0, 0, 100), dtype=np.uint8)).save(far)
    result = run_cli("classify", "--confs", str(path), "--package", str(tiny_package_v2.archive), str(far))
    assert result.returncode == 0, result.stderr
    assert "needs review: outside what this model was trained on" in result.stdout and "label Pre" not in result.stdout
    assert "1 need review" in result.stdout


def test_classify_json_reports_bad_inputs_clearly(tmp_path, tiny_package_v2):
    path = confs_file(tmp_path, tiny_package_v2.public_key_text)
    junk = tmp_path / "junk"
    save_jpeg(junk / "good.jpg", class_image("Early", seed=3))
    (junk / "notes.txt").write_text("not an image, and skipped: no image suffix")
    (junk / "fake.png").write_bytes(b"this is not a png")
    missing = tmp_path / "absent.jpg"
    result = run_cli("classify", "--confs", str(path), "--package", str(tiny_package_v2.archive), "--json",
                     str(junk), str(missing))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    *items, summary = json_lines(result.stdout)
    errors = {Path(o["file"]).name: o["error"] for o in items if "error" in o}
    assert errors == {"fake.png": errors["fake.png"], "absent.jpg": "no such file or directory"}
    assert "not an image" in errors["fake.png"]
    assert summary["classified"] == 1 and summary["errors"] == 2 and summary["labels"] == {"Early": 1}
    assert "fake.png: refused: not an image" in result.stderr


def test_classify_refuses_a_runtime_the_package_lacks_and_bad_precisions(tmp_path, tiny_package, tiny_package_v2):
    path = confs_file(tmp_path, tiny_package.public_key_text)
    image = save_jpeg(tmp_path / "a.jpg", class_image("Pre"))
    lacks = run_cli("classify", "--confs", str(path), "--package", str(tiny_package.archive), "--runtime", "onnxruntime",
                    str(image))
    assert lacks.returncode == 1 and "runtime onnxruntime has no model file in this package" in lacks.stderr
    (tmp_path / "v2").mkdir()
    path2 = confs_file(tmp_path / "v2", tiny_package_v2.public_key_text)
    bf16 = run_cli("classify", "--confs", str(path2), "--package", str(tiny_package_v2.archive), "--runtime",
                   "onnxruntime", "--precision", "bf16", str(image))
    assert bf16.returncode == 1 and "no bf16 mode" in bf16.stderr and "Traceback" not in bf16.stderr
    device = run_cli("classify", "--confs", str(path2), "--package", str(tiny_package_v2.archive), "--runtime",
                     "onnxruntime", "--device", "GPU", str(image))
    assert device.returncode == 1 and "--device sets the OpenVINO device" in device.stderr
