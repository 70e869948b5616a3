"""Build a small YOLOv2-style graph in the older Custom Vision object detection layout.

Older "General (compact)" exports return one tensor, `model_outputs0`
[1, A*(5+C), 13, 13] for a `data` [1,3,416,416] input, and leave decoding to
the caller with the five anchors below (in grid cells, width then height).
Channel a*(5+C)+k of cell (row, col) holds, for anchor a: k=0,1 the centre
offsets tx, ty; k=2,3 the log sizes tw, th; k=4 the objectness logit;
k>=5 the class logits. The Azure-Samples ONNX reader decodes a box as
centre ((col + tx) / 13, (row + ty) / 13), size (exp(tw) * anchor_w / 13,
exp(th) * anchor_h / 13), score sigmoid(objectness) * softmax(class logits).

The weights here are not trained. The graph averages the BGR input over the
whole image and writes exactly one detection:

* luma = 0.299 R + 0.587 G + 0.114 B of that mean decides the cell. Above
  LUMA_THRESHOLD the box is anchor 2 at row 4, col 9 ("bright" box); below
  it, anchor 1 at row 8, col 3 ("dark" box). Objectness logit is
  LUMA_GAIN * (luma - LUMA_THRESHOLD), negated for the dark box.
* warmth = mean R - mean B decides the class: logits
  +-WARMTH_GAIN * (warmth - WARMTH_THRESHOLD) for "warm" and "cool".
* tx = ty = the fixed point of the logistic function and tw = th = 0, so
  the box is exactly the anchor centred at (cell + 0.659046) / 13 whether or
  not a decoder applies the logistic to tx and ty. Custom Vision's older C#
  template does; the Azure-Samples Python reader does not.

Every other objectness logit is BACKGROUND_LOGIT, so no other box scores
above 1e-5.
"""

import math

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnxutil import constant

INPUT_SIZE = 416
GRID = 13
LABELS = ["warm", "cool"]
ANCHORS = [(0.573, 0.677), (1.87, 2.06), (3.34, 5.47), (7.88, 3.53), (9.77, 9.17)]
LUMA_THRESHOLD = 75.0
LUMA_GAIN = 1.0
WARMTH_THRESHOLD = 20.0
WARMTH_GAIN = 0.1
BACKGROUND_LOGIT = -12.0
BRIGHT_BOX = {"anchor": 2, "row": 4, "col": 9}
DARK_BOX = {"anchor": 1, "row": 8, "col": 3}


def logistic_fixed_point() -> float:
    """Solve t = 1 / (1 + exp(-t)) by iteration (t = 0.659046...)."""
    t = 0.5
    for _ in range(100):
        t = 1.0 / (1.0 + math.exp(-t))
    return t


def logistic(x: float) -> float:
    """Return 1 / (1 + exp(-x)) without overflow for large negative x."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    return math.exp(x) / (1.0 + math.exp(x))


def channel(anchor: int, field: int) -> int:
    return anchor * (5 + len(LABELS)) + field


def feature_weights() -> tuple:
    """Return the 1x1 convolution from the mean B, G, R to every output channel."""
    channels = len(ANCHORS) * (5 + len(LABELS))
    weight = np.zeros((channels, 3, 1, 1), np.float32)
    bias = np.zeros(channels, np.float32)
    luma = np.array([0.114, 0.587, 0.299], np.float32)
    warmth = np.array([-1.0, 0.0, 1.0], np.float32)

    for box, sign in ((BRIGHT_BOX, 1.0), (DARK_BOX, -1.0)):
        objectness = channel(box["anchor"], 4)
        weight[objectness, :, 0, 0] = sign * LUMA_GAIN * luma
        bias[objectness] = -sign * LUMA_GAIN * LUMA_THRESHOLD
        for label_index, label_sign in ((0, 1.0), (1, -1.0)):
            logit = channel(box["anchor"], 5 + label_index)
            weight[logit, :, 0, 0] = label_sign * WARMTH_GAIN * warmth
            bias[logit] = -label_sign * WARMTH_GAIN * WARMTH_THRESHOLD
    return weight, bias


def placement() -> tuple:
    """Return the mask that places the features in their cells, and the constant map."""
    channels = len(ANCHORS) * (5 + len(LABELS))
    mask = np.zeros((1, channels, GRID, GRID), np.float32)
    base = np.zeros((1, channels, GRID, GRID), np.float32)
    for anchor in range(len(ANCHORS)):
        base[0, channel(anchor, 4)] = BACKGROUND_LOGIT

    offset = logistic_fixed_point()
    for box in (BRIGHT_BOX, DARK_BOX):
        row, col = box["row"], box["col"]
        for field in range(5 + len(LABELS)):
            mask[0, channel(box["anchor"], field), row, col] = 1.0
        base[0, channel(box["anchor"], 0), row, col] = offset
        base[0, channel(box["anchor"], 1), row, col] = offset
        base[0, channel(box["anchor"], 4), row, col] = 0.0
    return mask, base


def legacy_detector() -> onnx.ModelProto:
    weight, bias = feature_weights()
    mask, base = placement()
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["data"], ["mean_bgr"]),
            helper.make_node("Conv", ["mean_bgr", "feature_weight", "feature_bias"], ["features"]),
            helper.make_node("Mul", ["features", "cell_mask"], ["placed"]),
            helper.make_node("Add", ["placed", "cell_base"], ["model_outputs0"]),
        ],
        "grid_detection_legacy",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, INPUT_SIZE, INPUT_SIZE])],
        [helper.make_tensor_value_info("model_outputs0", TensorProto.FLOAT, [1, mask.shape[1], GRID, GRID])],
    )
    constant(graph, "feature_weight", weight)
    constant(graph, "feature_bias", bias)
    constant(graph, "cell_mask", mask)
    constant(graph, "cell_base", base)
    # IR version 7 is the first that allows opset 13; ONNX Runtime 1.24 reads up to 13.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="visionfleet-fetch-assets")
    model.ir_version = 7
    return model


def expected_box(box: dict) -> list:
    """Return the normalised [x_min, y_min, x_max, y_max] the graph encodes for a box."""
    offset = logistic_fixed_point()
    anchor_w, anchor_h = ANCHORS[box["anchor"]]
    cx = (box["col"] + offset) / GRID
    cy = (box["row"] + offset) / GRID
    w = anchor_w / GRID
    h = anchor_h / GRID
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def reference_decode(output, probability_threshold: float = 0.01) -> list:
    """Decode model_outputs0 as the Azure-Samples ONNX reader does, without NMS.

    Returns (label index, score, box) for every box and class above the threshold.
    """
    grid = output[0].transpose(1, 2, 0).reshape(GRID, GRID, len(ANCHORS), 5 + len(LABELS))
    detections = []
    for row in range(GRID):
        for col in range(GRID):
            for anchor, (anchor_w, anchor_h) in enumerate(ANCHORS):
                tx, ty, tw, th, objectness = grid[row, col, anchor, :5]
                logits = grid[row, col, anchor, 5:].astype(np.float64)
                probabilities = np.exp(logits - logits.max())
                probabilities = probabilities / probabilities.sum() * logistic(float(objectness))
                label = int(np.argmax(probabilities))
                if probabilities[label] <= probability_threshold:
                    continue
                cx, cy = (col + tx) / GRID, (row + ty) / GRID
                w, h = math.exp(tw) * anchor_w / GRID, math.exp(th) * anchor_h / GRID
                box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
                detections.append((label, float(probabilities[label]), [float(value) for value in box]))
    return sorted(detections, key=lambda detection: -detection[1])
