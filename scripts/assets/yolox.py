"""Wrap ddddocr's common_det.onnx (a YOLOX-style detector) as a Custom Vision S1 detector.

The shipped model (opset 11) takes `images` [1,3,416,416] as BGR 0-255 and
returns `output` [1,3549,6]. It has one row per anchor point of the 52x52,
26x26 and 13x13 grids (strides 8, 16 and 32), each (x, y, log w, log h,
objectness, class score), the last two after a sigmoid. A row at grid cell
(gx, gy) with stride s has its centre at ((x + gx) * s, (y + gy) * s) and
its size exp(log w) * s by exp(log h) * s pixels, the usual YOLOX decoding.
It finds single characters and icons.
"""

import numpy as np
import onnx
from onnx import helper

import s1
from onnxutil import constant, prepend_nodes, replace_input

INPUT_SIZE = 416
STRIDES = (8, 16, 32)
SCORE_THRESHOLD = 0.3
IOU_THRESHOLD = 0.45
MAX_DETECTIONS = 200
SHIPPED_INPUT = "images"
SHIPPED_OUTPUT = "output"


def anchor_grid() -> tuple:
    """Return grid x, grid y and stride for each of the 3549 output rows."""
    xs, ys, strides = [], [], []
    for stride in STRIDES:
        cells = INPUT_SIZE // stride
        rows, cols = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        xs.append(cols.reshape(-1))
        ys.append(rows.reshape(-1))
        strides.append(np.full(cells * cells, stride))
    return tuple(np.concatenate(part).astype(np.float32) for part in (xs, ys, strides))


def s1_detector(shipped: onnx.ModelProto) -> onnx.ModelProto:
    """Build the S1 text detector: RGB input, decoding and NMS inside the graph."""
    model = onnx.ModelProto()
    model.CopyFrom(shipped)
    graph = model.graph
    # Every operator of the shipped graph means the same in opset 13, which
    # the Unsqueeze with an axes input below needs. IR version 7 allows opset 13.
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = max(entry.version, 13)
    model.ir_version = max(model.ir_version, 7)

    grid_x, grid_y, strides = anchor_grid()
    constant(graph, "yx_grid_x", grid_x)
    constant(graph, "yx_grid_y", grid_y)
    constant(graph, "yx_strides", strides)
    constant(graph, "yx_bgr", np.array([2, 1, 0], np.int64))
    constant(graph, "yx_rows", np.array([-1, 6], np.int64))
    for column in range(6):
        constant(graph, f"yx_column_{column}", np.array(column, np.int64))

    replace_input(graph, SHIPPED_INPUT, "yx_bgr_image")
    prepend_nodes(graph, [helper.make_node("Gather", [s1.INPUT_NAME, "yx_bgr"], ["yx_bgr_image"], axis=1)])

    columns = ["yx_x", "yx_y", "yx_log_w", "yx_log_h", "yx_objectness", "yx_class_score"]
    graph.node.append(helper.make_node("Reshape", [SHIPPED_OUTPUT, "yx_rows"], ["yx_table"]))
    for index, name in enumerate(columns):
        graph.node.append(helper.make_node("Gather", ["yx_table", f"yx_column_{index}"], [name], axis=1))
    graph.node.extend([
        helper.make_node("Add", ["yx_x", "yx_grid_x"], ["yx_cell_x"]),
        helper.make_node("Add", ["yx_y", "yx_grid_y"], ["yx_cell_y"]),
        helper.make_node("Mul", ["yx_cell_x", "yx_strides"], ["yx_cx"]),
        helper.make_node("Mul", ["yx_cell_y", "yx_strides"], ["yx_cy"]),
        helper.make_node("Exp", ["yx_log_w"], ["yx_exp_w"]),
        helper.make_node("Exp", ["yx_log_h"], ["yx_exp_h"]),
        helper.make_node("Mul", ["yx_exp_w", "yx_strides"], ["yx_w"]),
        helper.make_node("Mul", ["yx_exp_h", "yx_strides"], ["yx_h"]),
        helper.make_node("Mul", ["yx_objectness", "yx_class_score"], ["yx_scores"]),
    ])
    boxes = s1.corners(graph, "yx", "yx_cx", "yx_cy", "yx_w", "yx_h", INPUT_SIZE, INPUT_SIZE)
    s1.append_nms_outputs(graph, boxes, "yx_scores", MAX_DETECTIONS, IOU_THRESHOLD, SCORE_THRESHOLD)

    graph.input[0].name = s1.INPUT_NAME
    return model


def reference_decode(output, threshold: float = SCORE_THRESHOLD) -> list:
    """Decode the raw output with NumPy, before NMS, into (score, box in pixels) pairs."""
    grid_x, grid_y, strides = anchor_grid()
    rows = output[0]
    cx = (rows[:, 0] + grid_x) * strides
    cy = (rows[:, 1] + grid_y) * strides
    w = np.exp(rows[:, 2]) * strides
    h = np.exp(rows[:, 3]) * strides
    scores = rows[:, 4] * rows[:, 5]
    keep = np.where(scores > threshold)[0]
    return sorted(
        ((float(scores[i]), [float(cx[i] - w[i] / 2), float(cy[i] - h[i] / 2), float(cx[i] + w[i] / 2), float(cy[i] + h[i] / 2)]) for i in keep),
        key=lambda detection: -detection[0],
    )
