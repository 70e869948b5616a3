"""Small graph edits shared by the fixture builders."""

import onnx
from onnx import TensorProto, helper


def fixed_input(name: str, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def replace_input(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Make every node that reads `old` read `new` instead."""
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name == old:
                node.input[index] = new


def drop_initializer_inputs(graph: onnx.GraphProto) -> None:
    """Remove graph inputs that only restate initializers.

    Exporters for ONNX IR version 3 and older listed every weight as a graph
    input; newer runtimes warn about them and treat them as overridable.
    """
    weights = {initializer.name for initializer in graph.initializer}
    inputs = [value for value in graph.input if value.name not in weights]
    del graph.input[:]
    graph.input.extend(inputs)


def drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {name for node in graph.node for name in node.input}
    kept = [initializer for initializer in graph.initializer if initializer.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def constant(graph: onnx.GraphProto, name: str, array) -> str:
    """Add an initializer and return its name."""
    graph.initializer.append(onnx.numpy_helper.from_array(array, name))
    return name


def prepend_nodes(graph: onnx.GraphProto, nodes: list) -> None:
    """Insert nodes before the existing ones, keeping the graph topologically sorted."""
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)
