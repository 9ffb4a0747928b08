"""Small ONNX helpers shared by the exporters: stack per-horizon graphs, combine whole models
with weights (the ensemble), run a graph."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper

from stockml.models.base import ONNX_INPUT, ONNX_OUTPUT


class _GraphBuilder:
    """Nodes, initializers and opsets of a graph assembled from whole member graphs."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.functions: list[onnx.FunctionProto] = []
        # Identity/Reshape/Concat/Mul/Sum need the default domain even when a converter used
        # only ai.onnx.ml
        self.opsets: dict[str, int] = {"": 13}
        self.ir_versions: list[int] = []

    def absorb(self, model: onnx.ModelProto, prefix: str, source: str) -> str:
        """Copy ``model`` in with every name prefixed, fed from ``source``; returns its output."""
        prefixed = onnx.compose.add_prefix(model, prefix)
        graph = prefixed.graph
        initialised = {t.name for t in graph.initializer}
        first_input = next(i.name for i in graph.input if i.name not in initialised)
        self.nodes.append(helper.make_node("Identity", [source], [first_input]))
        self.nodes.extend(graph.node)
        self.initializers.extend(graph.initializer)
        self.functions.extend(prefixed.functions)
        for opset in prefixed.opset_import:
            self.opsets[opset.domain] = max(self.opsets.get(opset.domain, 0), opset.version)
        self.ir_versions.append(model.ir_version)
        return str(graph.output[0].name)

    def model(
        self, name: str, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto]
    ) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.initializers)
        merged = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid(d, v) for d, v in self.opsets.items()],
            functions=self.functions,
        )
        merged.ir_version = max(self.ir_versions)
        onnx.checker.check_model(merged)
        return merged


def stack_horizons(models: list[onnx.ModelProto], n_features: int) -> onnx.ModelProto:
    """One graph ``input [batch, n_features] -> output [batch, H]`` from H one-output graphs.

    Each converted tree model predicts one horizon; serving wants one file with one output,
    so their nodes are prefixed, fed the shared input and their outputs concatenated.
    """
    builder = _GraphBuilder()
    columns: list[str] = []
    for h, model in enumerate(models, start=1):
        out = builder.absorb(model, f"h{h}_", ONNX_INPUT)
        column = f"h{h}_column"
        builder.nodes.append(helper.make_node("Reshape", [out, "column_shape"], [column]))
        columns.append(column)
    builder.initializers.append(
        onnx.numpy_helper.from_array(np.array([-1, 1], np.int64), "column_shape")
    )
    builder.nodes.append(helper.make_node("Concat", columns, [ONNX_OUTPUT], axis=1))
    return builder.model(
        "stacked_horizons",
        [helper.make_tensor_value_info(ONNX_INPUT, TensorProto.FLOAT, ["batch", n_features])],
        [helper.make_tensor_value_info(ONNX_OUTPUT, TensorProto.FLOAT, ["batch", len(models)])],
    )


def compose_weighted(
    members: Sequence[tuple[str, bytes, str, np.ndarray]], kind: str, input_shape: tuple[int, ...]
) -> bytes:
    """One graph computing ``sum_m weights_m * member_m(input)`` per horizon.

    Args:
        members: ``(name, ONNX bytes, "tabular" | "sequence", weights [H])`` each; a member's
            graph may name its input and output anything (its first input and output are used).
        kind: the combined model's input kind; a ``sequence`` input ``[batch, window, F]``
            feeds its last row ``[batch, F]`` to ``tabular`` members.
        input_shape: the input's shape without the batch dimension.
    """
    if not members:
        raise ValueError("nothing to compose")
    builder = _GraphBuilder()
    if kind == "sequence":
        builder.initializers.append(onnx.numpy_helper.from_array(np.array(-1, np.int64), "last"))
        builder.nodes.append(helper.make_node("Gather", [ONNX_INPUT, "last"], ["last_row"], axis=1))
    terms = []
    horizon = len(members[0][3])
    for name, data, member_kind, weights in members:
        source = "last_row" if kind == "sequence" and member_kind == "tabular" else ONNX_INPUT
        out = builder.absorb(onnx.load_from_string(data), f"{name}__", source)
        weight = f"{name}__ensemble_weights"
        builder.initializers.append(
            onnx.numpy_helper.from_array(np.asarray(weights, np.float32), weight)
        )
        builder.nodes.append(helper.make_node("Mul", [out, weight], [f"{name}__weighted"]))
        terms.append(f"{name}__weighted")
    builder.nodes.append(helper.make_node("Sum", terms, [ONNX_OUTPUT]))
    return builder.model(
        "weighted_members",
        [helper.make_tensor_value_info(ONNX_INPUT, TensorProto.FLOAT, ["batch", *input_shape])],
        [helper.make_tensor_value_info(ONNX_OUTPUT, TensorProto.FLOAT, ["batch", horizon])],
    ).SerializeToString()


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
