"""Baselines every model is judged against: naive (zero log return = last price) and drift.

Both are exported to ONNX as well (``input @ 0 + bias``), so they can be served and checked
through the same path as the learned models.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from stockml.errors import ModelError
from stockml.models.base import ONNX_INPUT, ONNX_OUTPUT, Kind


class _ConstantReturn:
    """A tabular model that predicts the same log return per horizon for every row."""

    name = "constant"
    kind: Kind = "tabular"

    def __init__(self) -> None:
        self.bias_: np.ndarray | None = None
        self.n_features_: int | None = None

    def _bias(self, y_train: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fit(
        self,
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_val: np.ndarray,
        y_val: np.ndarray,
        val_groups: np.ndarray | None = None,
    ) -> _ConstantReturn:
        self.n_features_ = int(x_train.shape[-1])
        self.bias_ = self._bias(np.asarray(y_train, dtype=np.float64))
        return self

    def refit(self, x: np.ndarray, y: np.ndarray) -> _ConstantReturn:
        return type(self)().fit(x, y, x[:0], y[:0])

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.bias_ is None:
            raise ModelError(f"{self.name} is not fitted")
        return np.broadcast_to(self.bias_, (len(x), len(self.bias_))).copy()

    def to_onnx(self) -> bytes:
        if self.bias_ is None or self.n_features_ is None:
            raise ModelError(f"{self.name} is not fitted")
        h = len(self.bias_)
        # multiplying by zeros keeps the batch dimension dynamic without shape ops
        weights = numpy_helper.from_array(np.zeros((self.n_features_, h), np.float32), "weights")
        bias = numpy_helper.from_array(self.bias_.astype(np.float32), "bias")
        graph = helper.make_graph(
            [
                helper.make_node("MatMul", [ONNX_INPUT, "weights"], ["zero"]),
                helper.make_node("Add", ["zero", "bias"], [ONNX_OUTPUT]),
            ],
            self.name,
            [
                helper.make_tensor_value_info(
                    ONNX_INPUT, TensorProto.FLOAT, ["batch", self.n_features_]
                )
            ],
            [helper.make_tensor_value_info(ONNX_OUTPUT, TensorProto.FLOAT, ["batch", h])],
            initializer=[weights, bias],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model.SerializeToString()


class NaiveModel(_ConstantReturn):
    """Zero log return for every horizon: tomorrow's price is today's."""

    name = "naive"

    def _bias(self, y_train: np.ndarray) -> np.ndarray:
        return np.zeros(y_train.shape[1])


class DriftModel(_ConstantReturn):
    """The historical mean log return per horizon over the training window."""

    name = "drift"

    def _bias(self, y_train: np.ndarray) -> np.ndarray:
        return np.nanmean(y_train, axis=0)
