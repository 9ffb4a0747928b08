"""Small ONNX helpers shared by the exporters: stack per-horizon graphs, run a graph."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from stockml.models.base import ONNX_INPUT, ONNX_OUTPUT


def stack_horizons(models: list[onnx.ModelProto], n_features: int) -> onnx.ModelProto:
    """One graph ``input [batch, n_features] -> output [batch, H]`` from H one-output graphs.

    Each converted tree model predicts one horizon; serving wants one file with one output,
    so their nodes are prefixed, fed the shared input and their outputs concatenated.
    """
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    columns: list[str] = []
    # Identity/Reshape/Concat need the default domain even when a converter used only ai.onnx.ml
    opsets: dict[str, int] = {"": 13}
    for h, model in enumerate(models, start=1):
        prefixed = onnx.compose.add_prefix(model, f"h{h}_")
        graph = prefixed.graph
        nodes.append(helper.make_node("Identity", [ONNX_INPUT], [graph.input[0].name]))
        nodes.extend(graph.node)
        initializers.extend(graph.initializer)
        out = graph.output[0].name
        column = f"h{h}_column"
        nodes.append(helper.make_node("Reshape", [out, "column_shape"], [column]))
        columns.append(column)
        for opset in prefixed.opset_import:
            opsets[opset.domain] = max(opsets.get(opset.domain, 0), opset.version)
    initializers.append(onnx.numpy_helper.from_array(np.array([-1, 1], np.int64), "column_shape"))
    nodes.append(helper.make_node("Concat", columns, [ONNX_OUTPUT], axis=1))
    graph = helper.make_graph(
        nodes,
        "stacked_horizons",
        [helper.make_tensor_value_info(ONNX_INPUT, TensorProto.FLOAT, ["batch", n_features])],
        [helper.make_tensor_value_info(ONNX_OUTPUT, TensorProto.FLOAT, ["batch", len(models)])],
        initializer=initializers,
    )
    merged = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(domain, version) for domain, version in opsets.items()],
    )
    merged.ir_version = min(m.ir_version for m in models)
    onnx.checker.check_model(merged)
    return merged


def onnx_session(data: bytes, threads: int | None = None):  # type: ignore[no-untyped-def]
    """An ONNX Runtime CPU session for ``data`` (``threads`` intra-op threads when given)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def run_onnx(data: bytes, x: np.ndarray) -> np.ndarray:
    """Run an exported model once on float32 ``x``; returns ``[batch, H]`` float32."""
    session = onnx_session(data)
    return np.asarray(
        session.run([ONNX_OUTPUT], {ONNX_INPUT: np.ascontiguousarray(x, np.float32)})[0]
    )
