"""The ensemble: a model like the others, whose forecast is a convex combination of members'.

Weights live on the simplex (non-negative, summing to 1), one weight vector per horizon,
fitted directly on the validation slice by constrained least squares (``simplex_weights``).
The ensemble follows the one model protocol: ``fit`` fits its members (early-stopped on the
validation slice) and then its weights on their validation forecasts; ``refit`` refits every
member on more data and keeps the weights; ``to_onnx`` is ONE graph holding every member's
graph and the weighted sum, so serving runs it like any other model file.

Its input is the widest of its members': a ``sequence`` ensemble (any sequence member) takes
``[batch, window, n_features]`` and hands ``tabular`` members the last row, which is exactly
the row those members are trained on.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from stockml.errors import ModelError
from stockml.models.base import Kind, Model
from stockml.models.baselines import DriftModel, NaiveModel
from stockml.models.onnx_utils import compose_weighted
from stockml.models.sequences import WindowedRows

logger = logging.getLogger(__name__)

ENSEMBLE = "ensemble"
# members that are baselines, not learned models (progress counts the learned ones)
BASELINE_NAMES = (NaiveModel.name, DriftModel.name)


def simplex_weights(predictions: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The weights ``w >= 0, sum(w) = 1`` minimising ``||y - predictions @ w||^2``.

    Exact: a convex quadratic on the simplex has its minimum at the equality-constrained
    optimum of its support, so every support is solved in closed form (KKT system) and the
    best feasible solution kept. 2^M supports: fine for the handful of members an ensemble has.

    Args:
        predictions: ``[n, M]`` member forecasts (rows with a non-finite value are ignored).
        y: ``[n]`` outcomes.

    Returns:
        ``[M]`` weights.

    Raises:
        ModelError: no member, more than 16 members or no usable row.
    """
    p = np.asarray(predictions, np.float64)
    t = np.asarray(y, np.float64)
    ok = np.isfinite(p).all(axis=1) & np.isfinite(t)
    p, t = p[ok], t[ok]
    m = p.shape[1]
    if m == 0 or m > 16:
        raise ModelError(f"simplex weights need 1..16 members, got {m}")
    if len(t) == 0:
        raise ModelError("simplex weights need at least one finite row")
    gram, cross = p.T @ p, p.T @ t
    best_w, best_loss = None, np.inf
    for size in range(1, m + 1):
        for support in itertools.combinations(range(m), size):
            s = list(support)
            kkt = np.zeros((size + 1, size + 1))
            kkt[:size, :size] = gram[np.ix_(s, s)]
            kkt[:size, size] = kkt[size, :size] = 1.0
            rhs = np.r_[cross[s], 1.0]
            solution = np.linalg.lstsq(kkt, rhs, rcond=None)[0][:size]
            if (solution < -1e-12).any():
                continue
            w = np.zeros(m)
            w[s] = np.clip(solution, 0.0, None)
            w /= w.sum()
            loss = float(np.sum((t - p @ w) ** 2))
            # strictly better by a relative margin: among ties the smaller support wins
            if loss < best_loss * (1 - 1e-12) - 1e-300:
                best_w, best_loss = w, loss
    assert best_w is not None  # every single-member support is feasible
    return best_w


class EnsembleModel:
    """Convex combination of member models, one weight vector per horizon.

    Args:
        members: unfitted (``fit``) or fitted (``from_fitted``) models, by name.
    """

    name = ENSEMBLE

    def __init__(self, members: dict[str, Model]) -> None:
        if not members:
            raise ModelError("an ensemble needs at least one member")
        self.members = dict(members)
        self.kind: Kind = (
            "sequence" if any(m.kind == "sequence" for m in members.values()) else "tabular"
        )
        # [M, H], rows in ``self.members`` order
        self.weights_: np.ndarray | None = None
        self.fit_seconds_: dict[str, float] = {}
        self.input_shape_: tuple[int, ...] | None = None

    @classmethod
    def from_fitted(cls, members: dict[str, Model], weights: np.ndarray) -> EnsembleModel:
        """An ensemble of already fitted ``members`` with known weights ``[M, H]``."""
        model = cls(members)
        model.weights_ = np.asarray(weights, np.float64)
        return model

    def member_input(self, member: Model, x: np.ndarray | WindowedRows) -> Any:
        """What ``member`` is fed from the ensemble's input: the last row for tabular members."""
        if self.kind == "sequence" and member.kind == "tabular":
            return x.last_rows() if isinstance(x, WindowedRows) else x[:, -1, :]
        return x

    def fit(
        self,
        x_train: np.ndarray | WindowedRows,
        y_train: np.ndarray,
        x_val: np.ndarray | WindowedRows,
        y_val: np.ndarray,
        on_fit: Callable[[str], None] | None = None,
        val_groups: np.ndarray | None = None,
    ) -> EnsembleModel:
        """Fit every member (early-stopped on validation), then the weights on its forecasts.

        ``on_fit(member name)`` is called after each learned member is fitted (progress);
        ``val_groups`` (each validation row's date) is handed to every member (see
        ``Model.fit``).
        """
        self.input_shape_ = tuple(int(d) for d in x_train.shape[1:])
        for name, member in self.members.items():
            started = time.perf_counter()
            member.fit(
                self.member_input(member, x_train),
                y_train,
                self.member_input(member, x_val),
                y_val,
                val_groups=val_groups,
            )
            self.fit_seconds_[name] = time.perf_counter() - started
            if on_fit is not None and name not in BASELINE_NAMES:
                on_fit(name)
        self.fit_weights(self.member_predictions(x_val), y_val)
        return self

    def fit_weights(self, member_predictions: dict[str, np.ndarray], y: np.ndarray) -> None:
        """Simplex weights per horizon from the members' forecasts on validation rows."""
        y = np.asarray(y, np.float64)
        stacked = np.stack([member_predictions[n] for n in self.members], axis=1)  # [n, M, H]
        self.weights_ = np.column_stack(
            [simplex_weights(stacked[:, :, h], y[:, h]) for h in range(y.shape[1])]
        )
        logger.info("ensemble weights (rows %s): %s", list(self.members), self.weights_.round(3))

    def refit(self, x: np.ndarray | WindowedRows, y: np.ndarray) -> EnsembleModel:
        """Every member refitted on ``x``/``y`` (their chosen iterations); the weights kept."""
        if self.weights_ is None:
            raise ModelError("ensemble: refit needs the weights chosen by fit")
        members: dict[str, Model] = {}
        seconds: dict[str, float] = {}
        for name, member in self.members.items():
            started = time.perf_counter()
            members[name] = member.refit(self.member_input(member, x), y)
            seconds[name] = time.perf_counter() - started
        out = EnsembleModel.from_fitted(members, self.weights_)
        out.input_shape_ = tuple(int(d) for d in x.shape[1:])
        out.fit_seconds_ = seconds
        return out

    def member_predictions(self, x: np.ndarray | WindowedRows) -> dict[str, np.ndarray]:
        """Every member's native forecast ``[n, H]`` from the ensemble's input."""
        return {n: m.predict(self.member_input(m, x)) for n, m in self.members.items()}

    def combine(self, member_predictions: dict[str, np.ndarray]) -> np.ndarray:
        """The weighted sum of the members' forecasts, per horizon: ``[n, H]``."""
        if self.weights_ is None:
            raise ModelError("ensemble is not fitted")
        missing = [n for n in self.members if n not in member_predictions]
        if missing:
            raise ModelError(f"ensemble members without predictions: {missing}")
        stacked = np.stack([member_predictions[n] for n in self.members], axis=1)
        return np.einsum("nmh,mh->nh", stacked, self.weights_)

    def predict(self, x: np.ndarray | WindowedRows) -> np.ndarray:
        return self.combine(self.member_predictions(x))

    def weights(self) -> dict[str, list[float]]:
        """``{member: [weight per horizon]}`` (JSON-ready)."""
        if self.weights_ is None:
            raise ModelError("ensemble is not fitted")
        return {
            n: [float(v) for v in row] for n, row in zip(self.members, self.weights_, strict=True)
        }

    def to_onnx(self, member_onnx: dict[str, bytes] | None = None) -> bytes:
        """One graph: every member with a non-zero weight, then the weighted sum.

        Args:
            member_onnx: members' ONNX bytes already exported (exported here when absent).
        """
        if self.weights_ is None or self.input_shape_ is None:
            raise ModelError("ensemble is not fitted")
        parts = []
        for (name, member), row in zip(self.members.items(), self.weights_, strict=True):
            if not np.any(row):
                continue  # a member without weight adds nothing to the graph
            data = (member_onnx or {}).get(name) or member.to_onnx()
            parts.append((name, data, member.kind, row))
        return compose_weighted(parts, self.kind, self.input_shape_)
