"""The tiny nearest-colour model as ONNX (onnx helper API) and as TFLite (TensorFlow, in a child process).

Both take one uint8 NHWC input named `image` and give `probabilities` and `ood_score`, like a format-2 package.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from support.tiny_package import INPUT_NAME, OOD_NAME, OUTPUT_NAME, tiny_weights

ONNX_OPSET = 17
_TFLITE_SCRIPT = """
import sys
import numpy as np
import tensorflow as tf

data = np.load(sys.argv[1])
size, weights, bias, prototypes = int(data["size"]), data["weights"], data["bias"], data["prototypes"]


class Tiny(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.uint8, name="image")])
    def serve(self, image):
        mean = tf.reduce_mean(tf.cast(image, tf.float32), axis=[1, 2]) / 255.0
        probabilities = tf.nn.softmax(tf.matmul(mean, weights) + bias, axis=1)
        offsets = mean[:, None, :] - prototypes[None, :, :]
        score = tf.reduce_min(tf.reduce_sum(offsets * offsets, axis=2), axis=1)
        return {"probabilities": probabilities, "ood_score": score}


module = Tiny()
saved = sys.argv[2] + ".saved"
tf.saved_model.save(module, saved, signatures={"serving_default": module.serve.get_concrete_function()})
converter = tf.lite.TFLiteConverter.from_saved_model(saved)
open(sys.argv[2], "wb").write(converter.convert())
"""


class TfliteUnavailable(RuntimeError):
    """TensorFlow (needed only to write the test's .tflite) is not installed."""


def write_onnx(path: Path, image_size: int = 224, seed: int = 0) -> Path:
    """Mean colour → matmul → softmax, and the squared distance to the nearest prototype, as ONNX."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights, bias, prototypes = tiny_weights(seed)
    consts = {
        "w": weights, "b": bias, "protos": prototypes, "inv255": np.array(1.0 / 255.0, dtype=np.float32),
        "axis1": np.array([1], dtype=np.int64), "axis2": np.array([2], dtype=np.int64),
    }
    nodes = [
        helper.make_node("Cast", [INPUT_NAME], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["pixels"], ["mean_raw"], axes=[1, 2], keepdims=0),
        helper.make_node("Mul", ["mean_raw", "inv255"], ["mean"]),
        helper.make_node("MatMul", ["mean", "w"], ["scores"]),
        helper.make_node("Add", ["scores", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], axis=1),
        helper.make_node("Unsqueeze", ["mean", "axis1"], ["mean3"]),
        helper.make_node("Sub", ["mean3", "protos"], ["offsets"]),
        helper.make_node("Mul", ["offsets", "offsets"], ["squares"]),
        helper.make_node("ReduceSum", ["squares", "axis2"], ["distances"], keepdims=0),
        helper.make_node("ReduceMin", ["distances"], [OOD_NAME], axes=[1], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "tiny_colour_classifier",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["N", image_size, image_size, 3])],
        [
            helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", len(bias)]),
            helper.make_tensor_value_info(OOD_NAME, TensorProto.FLOAT, ["N"]),
        ],
        [numpy_helper.from_array(value, name) for name, value in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return Path(path)


def write_tflite(path: Path, image_size: int = 224, seed: int = 0) -> Path:
    """The same model as a .tflite with a serving_default signature; built once per weights and cached."""
    weights, bias, prototypes = tiny_weights(seed)
    digest = hashlib.sha256(b"".join(a.tobytes() for a in (weights, bias, prototypes)) + bytes([image_size % 256])).hexdigest()
    cache = Path(tempfile.gettempdir()) / "tiny-tflite-cache" / f"{digest[:16]}-{image_size}.tflite"
    if not cache.is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="tiny-tflite-") as tmp:
            arrays = Path(tmp) / "weights.npz"
            np.savez(arrays, size=image_size, weights=weights, bias=bias, prototypes=prototypes)
            target = Path(tmp) / "model.tflite"
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
            result = subprocess.run(
                [sys.executable, "-c", _TFLITE_SCRIPT, str(arrays), str(target)],
                capture_output=True, text=True, env=env, timeout=300,
            )
            if result.returncode != 0:
                if "No module named 'tensorflow'" in result.stderr:
                    raise TfliteUnavailable("TensorFlow is not installed: it is needed to write the test .tflite")
                raise RuntimeError(f"could not write the tiny .tflite: {result.stderr[-2000:]}")
            partial = cache.with_suffix(f".{os.getpid()}.part")
            partial.write_bytes(target.read_bytes())
            partial.replace(cache)
    Path(path).write_bytes(cache.read_bytes())
    return Path(path)
