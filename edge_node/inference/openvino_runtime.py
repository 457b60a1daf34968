"""OpenVINO runtime: Intel CPUs, integrated GPUs, NPUs, or AUTO.

A Movidius Neural Compute Stick 2 (MYRIAD) is not supported by OpenVINO 2024 and later: it needs the
2022.3 LTS release (`pip install openvino==2022.3.*`), an older IR and FP16, which this node does not pin.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import openvino as ov

from contracts.confs import EdgeNodeConfs, OpenVinoConfs
from contracts.model_package import Manifest, Precision
from contracts.selftest import RawOutputs
from edge_node.inference.base import ClassifierBase, ModelMismatchError, RequestedPrecision
from edge_node.inference.openvino_graph import rewrite_small_pools

logger = logging.getLogger(__name__)

KNOWN_DEVICES = ("CPU", "GPU", "NPU", "AUTO")
_DTYPES = {"uint8": ov.Type.u8, "float32": ov.Type.f32}
_PRECISIONS: dict[str, Precision] = {"f32": "f32", "bf16": "bf16", "f16": "f16"}
_core: ov.Core | None = None
_core_lock = threading.Lock()


def shared_core() -> ov.Core:
    """One OpenVINO Core per process (plugins load once; every classifier compiles on it)."""
    global _core
    with _core_lock:
        if _core is None:
            _core = ov.Core()
        return _core


def _dims_agree(ir_shape: ov.PartialShape, declared: list[int]) -> bool:
    """True when every static IR dimension equals the declared one (declared <= 0 means any)."""
    if ir_shape.rank.is_dynamic or ir_shape.rank.get_length() != len(declared):
        return False
    for ir_dim, want in zip(ir_shape, declared):
        if ir_dim.is_static and want > 0 and ir_dim.get_length() != want:
            return False
    return True


class OpenVinoClassifier(ClassifierBase):
    """Runs a package's IR on an OpenVINO device at a set precision."""

    runtime = "openvino"

    def __init__(
        self,
        package_dir: Path,
        manifest: Manifest,
        settings: OpenVinoConfs | None = None,
        *,
        precision: RequestedPrecision = "f32",
        confidence_threshold: float = 0.8,
        core: ov.Core | None = None,
    ) -> None:
        super().__init__(manifest, confidence_threshold)
        settings = settings or OpenVinoConfs()
        core = core or shared_core()
        xml_path = Path(package_dir) / manifest.model_xml
        try:
            model = core.read_model(str(xml_path), str(Path(package_dir) / manifest.model_bin))
        except RuntimeError as exc:
            raise ModelMismatchError(f"cannot read the IR {xml_path}: {exc}") from None
        self._prob_index, self._ood_index = self._check_model(model)
        batch = model.inputs[0].get_partial_shape()[0]
        self._batch_one = batch.is_static and batch.get_length() == 1
        if settings.rewrite_pools and self._runs_f32_on_cpu(core, settings.device, precision):
            rewrite_small_pools(model)
        self._compiled = self._compile(core, model, settings, precision)
        self.device = settings.device
        self.precision = self._effective_precision(settings.device, precision)
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()
        logger.info(
            "loaded model %s %s on OpenVINO %s at %s", manifest.name, manifest.version, self.device, self.precision
        )

    def _compile(
        self, core: ov.Core, model: ov.Model, settings: OpenVinoConfs, precision: RequestedPrecision
    ) -> ov.CompiledModel:
        config: dict[str, str | int | bool] = {"PERFORMANCE_HINT": "LATENCY"}
        if precision != "auto":
            config["INFERENCE_PRECISION_HINT"] = precision
        if settings.num_threads is not None:
            config["INFERENCE_NUM_THREADS"] = settings.num_threads
        if settings.device.upper().startswith("CPU"):
            # Pinned threads cannot leave a core another process is using: each layer then waits for the
            # descheduled thread, so on a shared CPU batch-1 latency suffers more than LiteRT's single thread.
            config["ENABLE_CPU_PINNING"] = settings.cpu_pinning
        if settings.cache_dir:
            Path(settings.cache_dir).mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = settings.cache_dir
        try:
            return core.compile_model(model, settings.device, config)
        except RuntimeError as exc:
            hint = " (MYRIAD needs OpenVINO 2022.3 LTS)" if settings.device.upper() == "MYRIAD" else ""
            raise ModelMismatchError(
                f"cannot compile model {self.manifest.name} {self.manifest.version} on {settings.device}{hint}: {exc}"
            ) from None

    @staticmethod
    def _runs_f32_on_cpu(core: ov.Core, device: str, requested: RequestedPrecision) -> bool:
        """True where the model will run at f32 on the CPU, the one case the pool rewrite is measured for."""
        # At bf16 the rewritten pool rounds the full-size image before averaging, which moves the OOD score
        # beyond the release's bf16 tolerance; the plugin's own AvgPool averages first.
        if not device.upper().startswith("CPU"):
            return False
        if requested != "auto":
            return requested == "f32"
        try:
            return bool(core.get_property("CPU", "INFERENCE_PRECISION_HINT") == ov.Type.f32)
        except (RuntimeError, TypeError):
            return False

    def _effective_precision(self, device: str, requested: RequestedPrecision) -> Precision:
        """The precision the device really runs (a CPU without BF16 or FP16 silently falls back)."""
        try:
            name = self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        except (RuntimeError, AttributeError, TypeError):
            name = ""
        if name in _PRECISIONS:
            effective = _PRECISIONS[name]
        elif requested != "auto":
            effective = _PRECISIONS[requested]
        else:
            effective = "f32" if device.upper().startswith("CPU") else "f16"
        if requested not in ("auto", effective):
            logger.warning("asked OpenVINO %s for %s; it runs %s", device, requested, effective)
        return effective

    def _check_model(self, model: ov.Model) -> tuple[int, int | None]:
        """Find the manifest's input and outputs in the IR and check shapes and types."""
        spec, out_spec = self.manifest.input, self.manifest.output
        if len(model.inputs) != 1:
            raise ModelMismatchError(f"IR has {len(model.inputs)} inputs; the manifest describes one")
        port = model.inputs[0]
        if spec.name not in port.get_names():
            raise ModelMismatchError(f"IR input is named {sorted(port.get_names())}, manifest says {spec.name!r}")
        if not _dims_agree(port.get_partial_shape(), spec.shape):
            raise ModelMismatchError(f"IR input shape {port.get_partial_shape()} differs from manifest {spec.shape}")
        if port.get_element_type() != _DTYPES[spec.dtype]:
            raise ModelMismatchError(f"IR input type {port.get_element_type()} differs from manifest {spec.dtype}")
        prob = self._output_index(model, out_spec.name)
        out_shape = model.outputs[prob].get_partial_shape()
        if not _dims_agree(out_shape, out_spec.shape):
            raise ModelMismatchError(f"IR output shape {out_shape} differs from manifest {out_spec.shape}")
        last = out_shape[out_shape.rank.get_length() - 1]
        if last.is_dynamic or last.get_length() != len(self.classes):
            raise ModelMismatchError(f"IR output has {last} classes, manifest lists {len(self.classes)}")
        ood = self._output_index(model, self.manifest.ood.output) if self.manifest.ood is not None else None
        return prob, ood

    @staticmethod
    def _output_index(model: ov.Model, name: str) -> int:
        found = [i for i, out in enumerate(model.outputs) if name in out.get_names()]
        if not found:
            names = [sorted(out.get_names()) for out in model.outputs]
            raise ModelMismatchError(f"IR outputs {names} do not include the manifest's {name!r}")
        return found[0]

    def infer_raw(self, batch: np.ndarray) -> RawOutputs:
        """N uint8 RGB images of the model's input size → probabilities (N, classes) and OOD scores (N,)."""
        tensor = self.check_batch(batch)
        chunks = [tensor[i : i + 1] for i in range(len(tensor))] if self._batch_one else [tensor]
        probs, scores = [], []
        with self._lock:
            for chunk in chunks:
                # Shared buffers: no copy of the input in, outputs copied out once (they are reused next call).
                self._request.infer({0: chunk}, share_inputs=True, share_outputs=True)
                probs.append(np.array(self._request.get_output_tensor(self._prob_index).data, dtype=np.float32))
                if self._ood_index is not None:
                    scores.append(np.array(self._request.get_output_tensor(self._ood_index).data, dtype=np.float32))
        probabilities = np.concatenate(probs).reshape(len(batch), len(self.classes))
        ood = np.concatenate([s.reshape(-1) for s in scores]) if scores else None
        return RawOutputs(probabilities, ood)


def create(
    package_dir: Path, manifest: Manifest, confs: EdgeNodeConfs, precision: RequestedPrecision
) -> OpenVinoClassifier:
    """The registry's entry point: the openvino section, its cache beside the model store by default."""
    settings = confs.openvino
    if settings.cache_dir is None:
        cache = Path(confs.model_store).parent / "openvino-cache"
        settings = settings.model_copy(update={"cache_dir": str(cache)})
    return OpenVinoClassifier(
        package_dir, manifest, settings, precision=precision, confidence_threshold=confs.confidence_threshold
    )


def check(confs: EdgeNodeConfs) -> list[str]:
    """Problems with the openvino section, each naming its key."""
    device = confs.openvino.device
    if device.split(":")[0] in KNOWN_DEVICES or device.startswith(("HETERO", "MULTI")):
        return []
    hint = " (MYRIAD needs OpenVINO 2022.3 LTS)" if device.upper() == "MYRIAD" else ""
    return [f"edge_node.openvino.device: {device!r} is not one of {KNOWN_DEVICES}{hint}"]
