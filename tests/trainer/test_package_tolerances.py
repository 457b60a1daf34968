"""Self-test tolerances: measured where the CPU runs a precision, safe defaults where it cannot."""

from __future__ import annotations

import numpy as np
import pytest

from contracts.selftest import RawOutputs
from trainer.package import OOD_RTOL_FLOOR, REDUCED_FLOOR, UNMEASURED_OOD_RTOL, UNMEASURED_REDUCED, measure_tolerances

PROBS = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1]], np.float32)
SCORES = np.array([1.0, 2.0], np.float32)


def _runner(prob_shift: float, ood_scale: float):  # type: ignore[no-untyped-def]
    def run(inputs: np.ndarray) -> RawOutputs:
        return RawOutputs(PROBS + np.array([prob_shift, -prob_shift, 0], np.float32), SCORES * ood_scale)
    return run


def test_reduced_precisions_measured_here_get_three_times_their_deviation() -> None:
    runners = {("openvino", "f32"): _runner(0, 1), ("onnxruntime", "f32"): _runner(0.001, 1.001),
               ("openvino", "bf16"): _runner(0.02, 1.06)}
    _ref, tolerances, ood_rtol, measured = measure_tolerances(np.zeros((2, 4, 4, 3), np.uint8), runners, 1.0)
    assert tolerances["bf16"] == tolerances["f16"] == pytest.approx(0.06, rel=1e-3)
    assert tolerances["f32"] == pytest.approx(0.005)
    assert ood_rtol == pytest.approx(3 * 0.06, rel=1e-3)
    assert set(measured) == {"openvino/f32", "onnxruntime/f32", "openvino/bf16"}


def test_a_cpu_without_bf16_or_f16_ships_the_unmeasured_defaults_not_the_f32_floor() -> None:
    runners = {("openvino", "f32"): _runner(0, 1), ("litert", "f32"): _runner(0.002, 1.004)}
    _ref, tolerances, ood_rtol, measured = measure_tolerances(np.zeros((2, 4, 4, 3), np.uint8), runners, 1.0)
    assert tolerances["bf16"] == tolerances["f16"] == UNMEASURED_REDUCED > REDUCED_FLOOR
    assert ood_rtol == UNMEASURED_OOD_RTOL > OOD_RTOL_FLOOR
    assert "openvino/bf16" not in measured


def test_a_reduced_precision_is_never_held_tighter_than_f32() -> None:
    runners = {("openvino", "f32"): _runner(0, 1), ("onnxruntime", "f32"): _runner(0.02, 1.0),
               ("openvino", "bf16"): _runner(0.005, 1.01)}
    _ref, tolerances, _ood, _measured = measure_tolerances(np.zeros((2, 4, 4, 3), np.uint8), runners, 1.0)
    assert tolerances["f32"] == pytest.approx(0.08, rel=1e-3)
    assert tolerances["bf16"] == tolerances["f32"]
