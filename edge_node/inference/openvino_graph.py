"""Equivalent rewrites of an IR before the CPU compiles it, for ops that the CPU plugin runs in a slow layout."""

from __future__ import annotations

import numpy as np
import openvino as ov
from openvino import opset15 as ops

# The CPU plugin runs AvgPool in a 16-channel blocked layout: a 3-channel image is padded to 16 channels
# and reordered at full resolution: about 40% of the released model's f32 layer time at batch 1.
# A depthwise GroupConvolution computes the same mean and keeps the image's own planar or NHWC layout.
MAX_POOL_CHANNELS = 15
_VALID_PADDING = ("explicit", "notset", "valid")


def _pool_as_depthwise(pool: ov.Node) -> ov.Node | None:
    """A GroupConvolution equal to an unpadded AvgPool of few channels, or None where it would differ."""
    shape = pool.input(0).get_partial_shape()
    if shape.is_dynamic or pool.get_output_partial_shape(0).is_dynamic:
        return None
    dims, out_dims = list(shape.to_shape()), list(pool.get_output_partial_shape(0).to_shape())
    attrs = pool.get_attributes()
    kernel, strides = list(attrs["kernel"]), list(attrs["strides"])
    if len(dims) != len(kernel) + 2 or not 0 < dims[1] <= MAX_POOL_CHANNELS:
        return None
    if str(attrs.get("auto_pad", "explicit")).lower() not in _VALID_PADDING:
        return None
    if any(attrs["pads_begin"]) or any(attrs["pads_end"]):
        return None
    # Only whole windows: then exclude-pad and the rounding type cannot change any output value.
    floor_dims = [(d - k) // s + 1 for d, k, s in zip(dims[2:], kernel, strides)]
    if out_dims[2:] != floor_dims or any(d < k for d, k in zip(dims[2:], kernel)):
        return None
    element = pool.get_input_element_type(0)
    if element != ov.Type.f32:
        return None
    channels = dims[1]
    weights = np.full([channels, 1, 1, *kernel], 1.0 / float(np.prod(kernel)), dtype=np.float32)
    zeros = [0] * len(kernel)
    conv = ops.group_convolution(pool.input_value(0), ops.constant(weights), strides, zeros, zeros, [1] * len(kernel))
    conv.set_friendly_name(pool.get_friendly_name())
    return conv


def rewrite_small_pools(model: ov.Model) -> int:
    """Replace each unpadded f32 AvgPool of at most MAX_POOL_CHANNELS channels by a depthwise convolution."""
    rewritten = 0
    for node in model.get_ordered_ops():
        if node.get_type_name() != "AvgPool":
            continue
        replacement = _pool_as_depthwise(node)
        if replacement is None:
            continue
        for target in list(node.output(0).get_target_inputs()):
            target.replace_source_output(replacement.output(0))
        replacement.output(0).get_tensor().add_names(node.output(0).get_names())
        rewritten += 1
    if rewritten:
        model.validate_nodes_and_infer_types()
    return rewritten
