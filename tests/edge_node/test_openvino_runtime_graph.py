"""The OpenVINO runtime's CPU tuning: few-channel average pools become depthwise convolutions with equal outputs,
every pool the rewrite could change (padding, partial windows, many channels, dynamic shapes) is left alone, and
inference threads are pinned to cores only when the confs ask."""

from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from contracts.confs import OpenVinoConfs
from edge_node.inference.openvino_graph import rewrite_small_pools
from edge_node.inference.openvino_runtime import OpenVinoClassifier, shared_core
from support.tiny_package import CLASSES, class_image

pytestmark = pytest.mark.timeout(120)


def pooled_model(
    shape: list[int],
    kernel: tuple[int, int] = (2, 2),
    strides: tuple[int, int] = (2, 2),
    pads: tuple[int, int] = (0, 0),
    rounding: str = "floor",
    auto_pad: str = "explicit",
) -> ov.Model:
    """Parameter → AvgPool → ReLU → Result, the pool's output tensor named 'pooled'."""
    image = ops.parameter(ov.PartialShape(shape), ov.Type.f32, name="image")
    pool = ops.avg_pool(image, list(strides), list(pads), list(pads), list(kernel), True, rounding, auto_pad)
    pool.output(0).get_tensor().set_names({"pooled"})
    return ov.Model([ops.result(ops.relu(pool))], [image], "pooled")


def run(model: ov.Model, x: np.ndarray) -> np.ndarray:
    compiled = shared_core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return np.array(compiled.create_infer_request().infer({0: x})[0])


def op_types(model: ov.Model) -> list[str]:
    return [op.get_type_name() for op in model.get_ordered_ops()]


@pytest.mark.parametrize(
    ("shape", "kernel", "strides"),
    [([1, 3, 224, 224], (2, 2), (2, 2)), ([2, 1, 9, 12], (3, 4), (2, 3)), ([1, 15, 8, 8], (1, 1), (1, 1))],
)
def test_an_unpadded_few_channel_pool_becomes_a_depthwise_convolution_with_equal_outputs(shape, kernel, strides):
    x = np.random.default_rng(3).uniform(-3, 255, shape).astype(np.float32)
    expected = run(pooled_model(shape, kernel, strides), x)
    model = pooled_model(shape, kernel, strides)
    assert rewrite_small_pools(model) == 1
    assert "AvgPool" not in op_types(model) and "GroupConvolution" in op_types(model)
    assert any("pooled" in op.output(0).get_names() for op in model.get_ordered_ops() if op.get_output_size() == 1)
    np.testing.assert_allclose(run(model, x), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    "model",
    [
        pooled_model([1, 3, 16, 16], pads=(1, 1)),  # exclude-pad means at the borders
        pooled_model([1, 3, 15, 15], rounding="ceil"),  # a partial window at the edge
        pooled_model([1, 3, 16, 16], auto_pad="same_upper", strides=(1, 1)),
        pooled_model([1, 16, 16, 16]),  # enough channels to fill the plugin's own block
        pooled_model([1, 3, -1, -1]),
    ],
    ids=["padded", "partial-window", "same-padding", "16-channels", "dynamic"],
)
def test_pools_the_rewrite_could_change_are_left_alone(model):
    assert rewrite_small_pools(model) == 0
    assert "AvgPool" in op_types(model) and "GroupConvolution" not in op_types(model)


def test_the_classifier_gives_the_same_results_with_and_without_the_rewrite(tiny_package_v2):
    package = tiny_package_v2
    batch = np.stack([class_image(label, seed=5) for label in CLASSES])
    plain = OpenVinoClassifier(package.unpacked, package.manifest, OpenVinoConfs(rewrite_pools=False))
    rewritten = OpenVinoClassifier(package.unpacked, package.manifest, OpenVinoConfs(rewrite_pools=True))
    a, b = plain.infer_raw(batch), rewritten.infer_raw(batch)
    np.testing.assert_allclose(b.probabilities, a.probabilities, atol=1e-6)
    np.testing.assert_allclose(np.asarray(b.ood_scores), np.asarray(a.ood_scores), rtol=1e-5)


@pytest.mark.parametrize(
    ("precision", "enabled", "expected"),
    [("f32", True, True), ("f32", False, False), ("bf16", True, False), ("f16", True, False), ("auto", True, None)],
)
def test_the_classifier_rewrites_only_at_f32_on_the_cpu_when_enabled(tiny_package_v2, monkeypatch, precision, enabled,
                                                                    expected):
    calls: list[ov.Model] = []
    target = "edge_node.inference.openvino_runtime.rewrite_small_pools"
    monkeypatch.setattr(target, lambda model: calls.append(model) or 0)
    package = tiny_package_v2
    OpenVinoClassifier(package.unpacked, package.manifest, OpenVinoConfs(rewrite_pools=enabled), precision=precision)
    if expected is None:  # auto: the CPU's own default precision decides
        expected = shared_core().get_property("CPU", "INFERENCE_PRECISION_HINT") == ov.Type.f32
    assert bool(calls) == expected


@pytest.mark.parametrize("pinning", [False, True])
def test_cpu_pinning_follows_the_setting(tiny_package_v2, pinning):
    package = tiny_package_v2
    classifier = OpenVinoClassifier(package.unpacked, package.manifest, OpenVinoConfs(cpu_pinning=pinning))
    in_effect = classifier._compiled.get_property("ENABLE_CPU_PINNING")
    if pinning:  # where the process may not set its own affinity (some containers) the plugin leaves them unpinned
        assert in_effect in (True, False)
    else:
        assert in_effect is False
