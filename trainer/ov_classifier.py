"""OpenVINO classification of raw uint8 RGB images: the code path an edge node mirrors (no TensorFlow)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import openvino as ov

log = logging.getLogger(__name__)

_NUMPY_TYPES = {"uint8": np.uint8, "float32": np.float32}


class OpenVinoClassifier:
    """Compiles an IR once and returns softmax probabilities for (N, H, W, 3) uint8 RGB batches."""

    def __init__(
        self,
        model_xml: Path | str,
        hint: str = "LATENCY",
        device: str = "CPU",
        core: ov.Core | None = None,
        cache_dir: Path | str | None = None,
        precision: str = "f32",
    ) -> None:
        self.core = core or ov.Core()
        # Pinned: a CPU with AMX or AVX512-BF16 would otherwise run bf16 by default.
        config: dict[str, str] = {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": precision}
        if cache_dir is not None:
            config["CACHE_DIR"] = str(cache_dir)
        model = self.core.read_model(str(model_xml))
        self.compiled = self.core.compile_model(model, device, config)
        port = self.compiled.input(0)
        self.input_shape = [int(d) for d in port.get_partial_shape().get_min_shape()]
        self.input_dtype = _NUMPY_TYPES.get(port.get_element_type().to_dtype().name, np.float32)
        self.request = self.compiled.create_infer_request()
        named = [i for i, out in enumerate(self.compiled.outputs) if "probabilities" in out.get_names()]
        self.output_index = named[0] if named else 0
        self.last_ms_per_image = 0.0

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        expected = tuple(self.input_shape[1:])
        if image.shape != expected:
            raise ValueError(f"image shape {image.shape} does not match the model input {expected}")
        return np.ascontiguousarray(image[None].astype(self.input_dtype, copy=False))

    def predict_one(self, image: np.ndarray) -> np.ndarray:
        """Probabilities for one (H, W, 3) uint8 RGB image."""
        result = self.request.infer({0: self._prepare(image)})
        return np.array(result[self.output_index][0], dtype=np.float32)

    def predict(self, images: np.ndarray, parallel: bool = True) -> np.ndarray:
        """Probabilities for a batch, one request per image (AsyncInferQueue when parallel)."""
        start = time.perf_counter()
        n_classes = self.compiled.output(self.output_index).get_partial_shape()[1].get_length()
        out = np.zeros((len(images), n_classes), np.float32)
        if parallel and len(images) > 1:
            queue = ov.AsyncInferQueue(self.compiled)

            def done(request: ov.InferRequest, index: int) -> None:
                out[index] = request.get_output_tensor(self.output_index).data[0]

            queue.set_callback(done)
            for i, image in enumerate(images):
                queue.start_async({0: self._prepare(image)}, userdata=i)
            queue.wait_all()
        else:
            for i, image in enumerate(images):
                out[i] = self.predict_one(image)
        self.last_ms_per_image = (time.perf_counter() - start) * 1000 / max(len(images), 1)
        return out
