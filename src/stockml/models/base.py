"""The one model protocol every forecaster follows, and the ONNX naming it exports with.

A model maps scaled float32 inputs to forward log returns for horizons 1..H, shaped
``[batch, H]``. ``tabular`` models take ``[batch, n_features]`` (the latest feature row);
``sequence`` models take ``[batch, window, n_features]`` (the latest ``window`` rows). The
same arrays feed training, evaluation, the ONNX parity checks and serving.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import numpy as np

from stockml.bundle import ModelEntry

Kind = Literal["tabular", "sequence"]

# every exported graph uses these names, so serving never guesses them
ONNX_INPUT = "input"
ONNX_OUTPUT = "output"


@runtime_checkable
class Model(Protocol):
    """A multi-horizon forecaster of forward log returns."""

    name: str
    kind: Kind

    def fit(
        self,
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_val: np.ndarray,
        y_val: np.ndarray,
        *,
        val_groups: np.ndarray | None = None,
    ) -> Model:
        """Fit on ``x_train``/``y_train`` ``[n, H]``; ``x_val``/``y_val`` choose the iterations
        (early stopping) and, for the ensemble, the weights. ``val_groups`` (the date of each
        validation row) makes early stopping maximise the mean daily rank IC instead of
        minimising the squared error: a model trained to rank a universe."""
        ...

    def refit(self, x: np.ndarray, y: np.ndarray) -> Model:
        """A fresh model trained on ``x``/``y`` for the iterations ``fit`` chose, no validation.

        How the published model learns from all labelled history: the newest sessions, which
        ``fit`` held out to choose the iterations, are learned from too.
        """
        ...

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted log returns ``[batch, H]`` (float64) with the native library."""
        ...

    def to_onnx(self) -> bytes:
        """The fitted model as ONNX: float32 ``input`` -> float32 ``output`` ``[batch, H]``."""
        ...


def model_entry(model: Model) -> ModelEntry:
    """The bundle entry (file name, input kind, tensor names) of ``model``."""
    return ModelEntry(
        file=f"{model.name}.onnx", kind=model.kind, input_name=ONNX_INPUT, output_name=ONNX_OUTPUT
    )
