"""Append the outputs of a Custom Vision "General (compact) [S1]" detector.

Those exports end in non-maximum suppression and return
detected_boxes [1,N,4] float (x_min, y_min, x_max, y_max, normalised to
[0,1]), detected_scores [1,N] float and detected_classes [1,N] int64, best
score first, as the Azure-Samples object_detection_s1 readers take them.
The input is `image_tensor` [1,3,H,W] RGB 0-255, as the C# sample feeds it.
"""

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnxutil import constant

INPUT_NAME = "image_tensor"


def append_nms_outputs(
    graph: onnx.GraphProto,
    boxes: str,
    scores: str,
    max_detections: int,
    iou_threshold: float,
    score_threshold: float,
) -> None:
    """Add NMS over one class and the three S1 outputs.

    `boxes` is [N,4] in output order and `scores` is [N]; both are
    single-class, so detected_classes is the NMS class column, all zeros.
    """
    constant(graph, "s1_max_detections", np.array([max_detections], np.int64))
    constant(graph, "s1_iou_threshold", np.array([iou_threshold], np.float32))
    constant(graph, "s1_score_threshold", np.array([score_threshold], np.float32))
    constant(graph, "s1_axis0", np.array([0], np.int64))
    constant(graph, "s1_scores_shape", np.array([1, 1, -1], np.int64))
    constant(graph, "s1_box_column", np.array(2, np.int64))
    constant(graph, "s1_class_column", np.array(1, np.int64))

    graph.node.extend([
        helper.make_node("Unsqueeze", [boxes, "s1_axis0"], ["s1_batched_boxes"]),
        helper.make_node("Reshape", [scores, "s1_scores_shape"], ["s1_batched_scores"]),
        helper.make_node(
            "NonMaxSuppression",
            ["s1_batched_boxes", "s1_batched_scores", "s1_max_detections", "s1_iou_threshold", "s1_score_threshold"],
            ["s1_selected"],
            center_point_box=0,
        ),
        helper.make_node("Gather", ["s1_selected", "s1_box_column"], ["s1_kept"], axis=1),
        helper.make_node("Gather", ["s1_selected", "s1_class_column"], ["s1_kept_classes"], axis=1),
        helper.make_node("Gather", [boxes, "s1_kept"], ["s1_kept_boxes"], axis=0),
        helper.make_node("Gather", [scores, "s1_kept"], ["s1_kept_scores"], axis=0),
        helper.make_node("Unsqueeze", ["s1_kept_boxes", "s1_axis0"], ["detected_boxes"]),
        helper.make_node("Unsqueeze", ["s1_kept_scores", "s1_axis0"], ["detected_scores"]),
        helper.make_node("Unsqueeze", ["s1_kept_classes", "s1_axis0"], ["detected_classes"]),
    ])

    del graph.output[:]
    graph.output.extend([
        helper.make_tensor_value_info("detected_boxes", TensorProto.FLOAT, [1, "N", 4]),
        helper.make_tensor_value_info("detected_scores", TensorProto.FLOAT, [1, "N"]),
        helper.make_tensor_value_info("detected_classes", TensorProto.INT64, [1, "N"]),
    ])


def corners(graph: onnx.GraphProto, prefix: str, cx: str, cy: str, w: str, h: str, width: int, height: int) -> str:
    """Turn centre and size in pixels into normalised, clipped corners [N,4]; return its name."""
    half = constant(graph, f"{prefix}_half", np.array(0.5, np.float32))
    inv_w = constant(graph, f"{prefix}_inv_width", np.array(1.0 / width, np.float32))
    inv_h = constant(graph, f"{prefix}_inv_height", np.array(1.0 / height, np.float32))
    zero = constant(graph, f"{prefix}_zero", np.array(0.0, np.float32))
    one = constant(graph, f"{prefix}_one", np.array(1.0, np.float32))
    column = constant(graph, f"{prefix}_column_axis", np.array([1], np.int64))

    nodes = [
        helper.make_node("Mul", [w, half], [f"{prefix}_half_w"]),
        helper.make_node("Mul", [h, half], [f"{prefix}_half_h"]),
    ]
    parts = []
    for corner, centre, half_size, inverse in (
        ("x_min", cx, f"{prefix}_half_w", inv_w),
        ("y_min", cy, f"{prefix}_half_h", inv_h),
        ("x_max", cx, f"{prefix}_half_w", inv_w),
        ("y_max", cy, f"{prefix}_half_h", inv_h),
    ):
        op = "Sub" if corner.endswith("min") else "Add"
        nodes.extend([
            helper.make_node(op, [centre, half_size], [f"{prefix}_{corner}_px"]),
            helper.make_node("Mul", [f"{prefix}_{corner}_px", inverse], [f"{prefix}_{corner}_raw"]),
            helper.make_node("Clip", [f"{prefix}_{corner}_raw", zero, one], [f"{prefix}_{corner}_clipped"]),
            helper.make_node("Unsqueeze", [f"{prefix}_{corner}_clipped", column], [f"{prefix}_{corner}"]),
        ])
        parts.append(f"{prefix}_{corner}")

    nodes.append(helper.make_node("Concat", parts, [f"{prefix}_boxes"], axis=1))
    graph.node.extend(nodes)
    return f"{prefix}_boxes"
