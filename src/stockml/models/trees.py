"""Gradient-boosted trees: XGBoost and LightGBM, one booster per horizon.

Both train on the float32-scaled features from ``FeatureSpec.transform``: ONNX compares in
float32, and a float64 threshold between two float32 values could send a row down another
branch than the native model did (see PROBES.md). Early stopping picks the number of trees
on the validation slice; the exported and native models are truncated to that number, so
they hold the same trees.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import onnx

from stockml.errors import ModelError
from stockml.models.base import Kind
from stockml.models.onnx_utils import stack_horizons

logger = logging.getLogger(__name__)


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (the one probe every model uses)."""
    try:
        import torch
    except ImportError:  # a serving-only install
        return False
    return bool(torch.cuda.is_available())


def xgboost_has_cuda() -> bool:
    """Whether the installed xgboost was compiled with CUDA support."""
    import xgboost

    return bool(xgboost.build_info().get("USE_CUDA"))


class XGBoostModel:
    """One ``xgboost.Booster`` per horizon; ``device="cuda"`` when a GPU is present."""

    name = "xgboost"
    kind: Kind = "tabular"

    def __init__(
        self,
        n_estimators: int = 300,
        max_depth: int = 4,
        learning_rate: float = 0.05,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        early_stopping_rounds: int = 30,
        seed: int = 42,
        n_jobs: int | None = None,
        device: str = "auto",
    ) -> None:
        self.n_estimators = n_estimators
        self.early_stopping_rounds = early_stopping_rounds
        self.device = ("cuda" if cuda_available() else "cpu") if device == "auto" else device
        if self.device == "cuda" and not xgboost_has_cuda():
            # e.g. the xgboost-cpu wheel: train on the CPU rather than fail the job
            logger.warning("xgboost was built without CUDA; training on cpu")
            self.device = "cpu"
        self.params: dict[str, Any] = {
            "objective": "reg:squarederror",
            "max_depth": max_depth,
            "eta": learning_rate,
            "subsample": subsample,
            "colsample_bytree": colsample_bytree,
            "seed": seed,
            "device": self.device,
            "tree_method": "hist",
        }
        if n_jobs is not None:
            self.params["nthread"] = n_jobs
        self.boosters_: list[Any] = []
        self.n_features_: int | None = None

    def fit(
        self, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray
    ) -> XGBoostModel:
        import xgboost as xgb

        self.n_features_ = int(x_train.shape[1])
        self.boosters_ = []
        for h in range(y_train.shape[1]):
            train = xgb.DMatrix(x_train, label=y_train[:, h])
            val = xgb.DMatrix(x_val, label=y_val[:, h])
            booster = xgb.train(
                self.params,
                train,
                num_boost_round=self.n_estimators,
                evals=[(val, "val")],
                early_stopping_rounds=self.early_stopping_rounds,
                verbose_eval=False,
            )
            # keep only the trees early stopping chose: native and ONNX then agree
            booster = booster[: booster.best_iteration + 1]
            # predictions on CPU after training: serving-side parity and single-row latency
            booster.set_param({"device": "cpu"})
            self.boosters_.append(booster)
        logger.info(
            "xgboost trees per horizon: %s", [b.num_boosted_rounds() for b in self.boosters_]
        )
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        if not self.boosters_:
            raise ModelError("xgboost is not fitted")
        x = np.ascontiguousarray(x, np.float32)
        return np.column_stack([b.inplace_predict(x) for b in self.boosters_]).astype(np.float64)

    def feature_importance(self, names: list[str]) -> dict[str, float]:
        """Total gain per feature, summed over horizons."""
        out = dict.fromkeys(names, 0.0)
        for booster in self.boosters_:
            for key, gain in booster.get_score(importance_type="total_gain").items():
                out[names[int(key[1:])]] += float(gain)
        return out

    def to_onnx(self) -> bytes:
        from onnxmltools import convert_xgboost
        from onnxmltools.convert.common.data_types import FloatTensorType

        if not self.boosters_ or self.n_features_ is None:
            raise ModelError("xgboost is not fitted")
        graphs: list[onnx.ModelProto] = []
        for booster in self.boosters_:
            graphs.append(
                convert_xgboost(
                    booster,
                    initial_types=[("input", FloatTensorType([None, self.n_features_]))],
                    target_opset=15,
                )
            )
        return stack_horizons(graphs, self.n_features_).SerializeToString()


class LightGBMModel:
    """One ``lightgbm.Booster`` per horizon; tries ``device_type="gpu"`` when asked and present."""

    name = "lightgbm"
    kind: Kind = "tabular"

    def __init__(
        self,
        n_estimators: int = 300,
        num_leaves: int = 15,
        learning_rate: float = 0.05,
        min_data_in_leaf: int = 20,
        feature_fraction: float = 0.8,
        bagging_fraction: float = 0.8,
        early_stopping_rounds: int = 30,
        seed: int = 42,
        n_jobs: int | None = None,
        device: str = "cpu",
    ) -> None:
        self.n_estimators = n_estimators
        self.early_stopping_rounds = early_stopping_rounds
        self.device = ("gpu" if cuda_available() else "cpu") if device == "auto" else device
        self.params: dict[str, Any] = {
            "objective": "regression",
            "num_leaves": num_leaves,
            "learning_rate": learning_rate,
            "min_data_in_leaf": min_data_in_leaf,
            "feature_fraction": feature_fraction,
            "bagging_fraction": bagging_fraction,
            "bagging_freq": 1,
            "seed": seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
            "device_type": self.device,
        }
        if n_jobs is not None:
            self.params["num_threads"] = n_jobs
        self.boosters_: list[Any] = []
        self.n_features_: int | None = None

    def _train(
        self, x_train: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray
    ) -> Any:
        import lightgbm as lgb

        train = lgb.Dataset(x_train, label=y, free_raw_data=False)
        val = lgb.Dataset(x_val, label=y_val, reference=train)
        return lgb.train(
            self.params,
            train,
            num_boost_round=self.n_estimators,
            valid_sets=[val],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
        )

    def fit(
        self, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray
    ) -> LightGBMModel:
        import lightgbm as lgb

        self.n_features_ = int(x_train.shape[1])
        self.boosters_ = []
        for h in range(y_train.shape[1]):
            try:
                booster = self._train(x_train, y_train[:, h], x_val, y_val[:, h])
            except lgb.basic.LightGBMError as exc:
                if self.params["device_type"] == "cpu":
                    raise ModelError(f"lightgbm failed: {exc}") from exc
                # a wheel without GPU support: CPU gives the same model family, just slower
                logger.warning("lightgbm %s unavailable (%s); using cpu", self.device, exc)
                self.params["device_type"] = self.device = "cpu"
                booster = self._train(x_train, y_train[:, h], x_val, y_val[:, h])
            best = booster.best_iteration or booster.num_trees()
            # keep only the trees early stopping chose: native and ONNX then agree
            self.boosters_.append(
                lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
            )
        logger.info("lightgbm trees per horizon: %s", [b.num_trees() for b in self.boosters_])
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        if not self.boosters_:
            raise ModelError("lightgbm is not fitted")
        x = np.ascontiguousarray(x, np.float32)
        return np.column_stack([b.predict(x) for b in self.boosters_]).astype(np.float64)

    def feature_importance(self, names: list[str]) -> dict[str, float]:
        """Total gain per feature, summed over horizons."""
        total = np.sum(
            [b.feature_importance(importance_type="gain") for b in self.boosters_], axis=0
        )
        return {n: float(v) for n, v in zip(names, total, strict=True)}

    def to_onnx(self) -> bytes:
        from onnxmltools import convert_lightgbm
        from onnxmltools.convert.common.data_types import FloatTensorType

        if not self.boosters_ or self.n_features_ is None:
            raise ModelError("lightgbm is not fitted")
        graphs = [
            convert_lightgbm(
                booster,
                initial_types=[("input", FloatTensorType([None, self.n_features_]))],
                target_opset=15,
                zipmap=False,
            )
            for booster in self.boosters_
        ]
        return stack_horizons(graphs, self.n_features_).SerializeToString()
