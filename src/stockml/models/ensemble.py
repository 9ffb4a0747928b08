"""The ensemble: a weighted sum of member predictions, weights fitted on validation only.

It has no ONNX file of its own: serving computes the same weighted sum of the members' ONNX
outputs (``Manifest.ensemble_weights``).
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.optimize import nnls

from stockml.errors import ModelError

logger = logging.getLogger(__name__)


def fit_weights(val_predictions: dict[str, np.ndarray], y_val: np.ndarray) -> dict[str, float]:
    """Non-negative weights summing to 1 that minimise the validation squared error.

    Args:
        val_predictions: member name -> predictions ``[n, H]`` on the validation slice.
        y_val: the validation targets ``[n, H]`` (never test data: that would leak).

    Returns:
        Member name -> weight. Non-negative least squares over all horizons; when NNLS puts
        no weight anywhere (members anti-correlated with the target), inverse-MSE weights.
    """
    if not val_predictions:
        raise ModelError("an ensemble needs at least one member")
    names = sorted(val_predictions)
    design = np.column_stack([val_predictions[n].reshape(-1) for n in names])
    target = np.asarray(y_val, dtype=np.float64).reshape(-1)
    ok = np.isfinite(design).all(axis=1) & np.isfinite(target)
    weights, _ = nnls(design[ok], target[ok])
    if weights.sum() <= 1e-12:
        mse = ((design[ok] - target[ok, None]) ** 2).mean(axis=0)
        weights = 1.0 / np.maximum(mse, 1e-18)
        logger.info("nnls gave all-zero weights; using inverse-MSE weights")
    weights = weights / weights.sum()
    return {n: float(w) for n, w in zip(names, weights, strict=True)}


def combine(predictions: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """The ensemble prediction ``sum_m weights[m] * predictions[m]``, shaped ``[n, H]``."""
    missing = [n for n in weights if n not in predictions]
    if missing:
        raise ModelError(f"ensemble members without predictions: {missing}")
    return np.sum([w * np.asarray(predictions[n], np.float64) for n, w in weights.items()], axis=0)
